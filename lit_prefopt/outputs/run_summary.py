"""The few lines printed at the end of a run: what it did and where its outputs are.

Without them a run ended on the last line of the export's progress bar, and the user had to
know to open summary.json to learn whether anything was learned and where the model went.
"""

from __future__ import annotations

from pathlib import Path

# The validation metrics worth a line each; summary.json holds them all.
HEADLINE_METRICS = ("val/loss", "val/rewards/accuracy", "val/rewards/margin", "val/rewards/chosen")


def format_run_summary(summary: dict, run_dir: Path) -> str:
    """`write_summary`'s dict as a short report: steps, tokens, time, skips, data counts, the
    initial and final validation metrics, and the output paths."""
    counts = summary.get("data_counts") or {}
    pairs = ", ".join(f"{counts.get(name, 0)} {name}" for name in ("truncated", "dropped", "skipped"))
    lines = [
        f"Run finished: {summary['steps']} optimizer steps, {summary['tokens']:,} tokens, {summary['seconds']:.1f} s, "
        f"{summary['skipped_steps']} skipped steps (non-finite); pairs: {pairs}",
    ]
    initial, final = summary.get("initial_val") or {}, summary.get("final_val") or {}
    shown = [name for name in HEADLINE_METRICS if name in initial or name in final]
    if shown:
        lines.append("validation (initial -> final):")
        width = max(len(name) for name in shown)
        lines += [f"  {name:<{width}}  {_value(initial.get(name))} -> {_value(final.get(name))}" for name in shown]
    lines.append("outputs:")
    outputs = (("model (hf/)", summary.get("hf_export")), ("metrics", summary.get("metrics_csv")),
               ("last checkpoint", summary.get("last_checkpoint")))
    lines += [f"  {label:<16} {path}" for label, path in outputs if path]
    lines.append(f"  {'summary':<16} {run_dir / 'summary.json'}")
    return "\n".join(lines)


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
