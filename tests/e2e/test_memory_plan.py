"""`plan=true`: the memory estimate against the measured peak of real CPU runs of two model sizes.

Each run measures the rise of its process's peak resident memory from before the models load to
the end of training (tests/peak_memory.py). What the runtime adds on its own (autograd, Lightning's
loops, allocator arenas) is measured by the same run with the default tiny model, whose own
estimate is well under a megabyte of weights, and subtracted: what remains is what the plan
estimates. Every pair is longer than `data.max_seq_len`, so every batch has the plan's worst-case
shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lit_prefopt.models.tiny import TinyLlama
from lit_prefopt.plan import plan_memory
from tests.entry_process import entry_env

SIZES = {
    "baseline": {},  # the default tiny model: the runtime's own rise
    "small": dict(hidden_size=256, num_hidden_layers=4, intermediate_size=688, num_attention_heads=8,
                  num_key_value_heads=4),
    "large": dict(hidden_size=768, num_hidden_layers=8, intermediate_size=2048, num_attention_heads=12,
                  num_key_value_heads=4),
}


def long_pairs(path: Path) -> Path:
    """Pairs whose prompt and completions each exceed the 128-token cap, so every row is truncated to it."""
    words = "the quick brown fox jumps over a lazy dog while seven wizards quietly brew potent elixirs".split()
    lines = []
    for n in range(8):
        text = " ".join(words[(n + k) % len(words)] for k in range(160))
        lines.append(json.dumps({"src": text, "tgt_chosen": text[::-1], "tgt_rejected": text.upper()}))
    path.write_text("\n".join(lines) + "\n")
    return path


def overrides(size: str, data: Path) -> list[str]:
    return [*(f"model.{key}={value}" for key, value in SIZES[size].items()), f"data.train_files=[{data}]",
            "data.val_files=null", "data.batch_size=2", "data.max_seq_len=128", "data.share_prompt=false",
            "data.shuffle=false", "trainer.max_steps=2", "validate_before_training=false", "export_hf=false",
            "checkpoint.every_n_steps=1000"]


def measured_rises(data: Path, cwd: Path) -> dict[str, int]:
    """Peak resident memory during fit above its start, in bytes, of a real run per size, each in its
    own process (run side by side: each process's peak is its own)."""
    env = entry_env()
    runs = {}
    for size in SIZES:
        args = [f"run_name={size}", *overrides(size, data), "+callbacks.peak._target_=tests.peak_memory.PeakResidentMemory",
                f"+callbacks.peak.path={cwd / size}.json"]
        runs[size] = subprocess.Popen([sys.executable, "-m", "lit_prefopt", *args], cwd=cwd, env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rises = {}
    for size, run in runs.items():
        _, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr[-4000:]
        figures = json.loads((cwd / f"{size}.json").read_text())
        rises[size] = figures["peak"] - figures["start"]
    return rises


@pytest.mark.slow
def test_plan_is_within_30_percent_of_measured_peaks(compose, isolated_cache: Path, tmp_path: Path) -> None:
    data = long_pairs(tmp_path / "long.jsonl")
    for architecture in SIZES.values():  # built here, so building is not part of the measured runs
        TinyLlama(cache_dir=str(isolated_cache), **architecture).prepare()
    rise = measured_rises(data, tmp_path)
    estimate = {size: plan_memory(compose(*overrides(size, data))).total for size in SIZES}
    report = {size: (round((rise[size] - rise["baseline"]) / 2**20), round(estimate[size] / 2**20)) for size in SIZES}
    print("measured rise above the baseline run vs estimate (MiB):", report)
    for size in ("small", "large"):
        measured = rise[size] - rise["baseline"]
        assert estimate[size] == pytest.approx(measured, rel=0.3), report
