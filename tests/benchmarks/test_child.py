"""A benchmarked child that fails reports no result, even when a log is on disk from before."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.child import run_child


def _writer(log_path: Path, exit_code: int) -> list[str]:
    code = f"import json, sys; open({str(log_path)!r}, 'w').write(json.dumps({{'max_rss_kib': 1024}})); sys.exit({exit_code})"
    return ["-c", code]


def test_a_failed_child_has_no_log_even_over_an_earlier_one(tmp_path: Path) -> None:
    log_path = tmp_path / "run.steps.json"
    log_path.write_text(json.dumps({"max_rss_kib": 2048, "ends": [1.0]}))  # an earlier attempt's log
    failed = run_child(["-c", "import sys; sys.exit(3)"], log_path, dict(os.environ), timeout_s=60)
    assert failed.returncode == 3 and failed.log is None
    wrote_then_failed = run_child(_writer(log_path, 1), log_path, dict(os.environ), timeout_s=60)
    assert wrote_then_failed.returncode == 1 and wrote_then_failed.log is None


def test_a_finished_child_reports_its_log(tmp_path: Path) -> None:
    log_path = tmp_path / "run.steps.json"
    finished = run_child(_writer(log_path, 0), log_path, dict(os.environ), timeout_s=60)
    assert finished.returncode == 0 and finished.log == {"max_rss_kib": 1024} and finished.peak_rss_mib == 1.0
