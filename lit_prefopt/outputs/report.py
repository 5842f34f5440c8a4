"""What a user reads after a run without W&B: `summary.json` and `curves.png`."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import torch
from lightning.pytorch import Trainer

CURVES = (
    ("loss", ("train/loss", "val/loss")),
    ("reward margin", ("train/rewards/margin", "val/rewards/margin")),
    ("reward accuracy", ("train/rewards/accuracy", "val/rewards/accuracy")),
)


def write_summary(
    run_dir: Path, trainer: Trainer, initial: dict[str, float], final: dict[str, float], seconds: float, exported: bool
) -> dict:
    """Steps, tokens, data counts, final and initial validation metrics, and where the outputs are."""
    module = trainer.lightning_module
    summary = {
        "steps": trainer.global_step,
        "tokens": module.tokens_seen,
        "data_counts": module.data_counts,
        "skipped_steps": module.skipped_steps,
        "seconds": round(seconds, 1),
        "initial_val": {k: v for k, v in initial.items() if k.startswith("val/")},
        "final_val": {k: v for k, v in final.items() if k.startswith("val/")},
        "final_train": {k: v for k, v in final.items() if k.startswith("train/")},
        "last_checkpoint": str(run_dir / "checkpoints" / "last.ckpt"),
        "hf_export": str(run_dir / "hf") if exported else None,
        "metrics_csv": str(run_dir / "metrics.csv") if (run_dir / "metrics.csv").exists() else None,  # logger=none
        "peak_cuda_memory_gib": peak_cuda_memory_gib(),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def peak_cuda_memory_gib() -> float | None:
    """The most GPU memory this process's tensors held at once (None on CPU-only runs)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**30, 3)


def write_curves(metrics_csv: Path, target: Path) -> bool:
    """Plot train/val loss, reward margin and accuracy over steps; False when there is no CSV.

    Also False, with a warning, when matplotlib cannot be imported (an image given only the wheels a
    run needs, as the GPU check's recipe installs): the plot is a convenience, and the run it would
    show has finished and saved everything else.
    """
    if not metrics_csv.is_file():
        return False
    try:
        import matplotlib
    except ImportError as error:
        warnings.warn(f"{target} not written: matplotlib cannot be imported ({error})", stacklevel=2)
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_csv, newline="") as file:
        rows = list(csv.DictReader(file))
    figure, axes = plt.subplots(1, len(CURVES), figsize=(5 * len(CURVES), 3.6))
    for axis, (title, names) in zip(axes, CURVES):
        for name in names:
            points = [(float(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
            if points:
                xs, ys = zip(*sorted(points))
                axis.plot(xs, ys, marker="o" if name.startswith("val/") else None, label=name)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return True
