"""What a run leaves behind besides checkpoints: its CSV metrics, W&B, curves and summary."""
