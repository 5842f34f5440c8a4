"""Side-by-side benchmark of lit_prefopt against Hugging Face TRL (`python -m benchmarks.run`)."""
