"""The benchmark script runs end to end (2 steps, tiny sizes) so it cannot rot; no timings checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_smoke(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--smoke", "--criteria", "dpo", "simpo", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "smoke.json").read_text())
    failed = [r["name"] for r in report["runs"] + report["memory"]["runs"] + list(_cache_runs(report)) if "pairs_per_s" not in r]
    assert not failed, failed
    assert {r["system"] for r in report["runs"]} == {"trl", "lit_prefopt"}
    for criterion, sizes in report["parity"]["criteria"].items():
        for size, result in sizes.items():
            assert result["same_tokens"], (criterion, size)
            assert result["abs_diff"]["logps_chosen"] < report["parity"]["tolerance"], (criterion, size, result)
    assert (tmp_path / "smoke.md").read_text().startswith("# lit_prefopt vs TRL")


def _cache_runs(report: dict):
    return (r for r in report.get("cache", {}).values() if isinstance(r, dict))
