"""The log-prob kernels: per-sequence log-probs, the chunked LM head, shared-prompt attention."""
