"""Where a step's reference log-probs come from: one source, chosen once per run (source.py)."""
