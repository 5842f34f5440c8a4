"""A benchmarked child that fails reports no result, even when a log is on disk from before; children
see the repository and the packages the caller added to PYTHONPATH."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.child import REPO, child_env, run_child


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


def test_children_keep_the_callers_pythonpath_after_the_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Wheels installed beside a GPU image's packages (`pip install --target DIR`, PYTHONPATH=DIR) must
    reach the training runs the GPU check starts, or they fail to import hydra."""
    site = tmp_path / "site"
    (site / "carried_package").mkdir(parents=True)
    (site / "carried_package" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(site))
    env = child_env(None)
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), str(site)]
    log_path = tmp_path / "run.steps.json"
    code = f"import json, carried_package, benchmarks; open({str(log_path)!r}, 'w').write(json.dumps({{'max_rss_kib': 1}}))"
    assert run_child(["-c", code], log_path, env, timeout_s=60).returncode == 0


def test_children_leave_a_launchers_process_group_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside a SLURM job or under torchrun, a child must not take the launcher's ranks for its own
    cluster (Lightning reads them); everything else of the caller's environment passes through."""
    for name, value in {"SLURM_NTASKS": "4", "RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_PORT": "29500",
                        "TORCHELASTIC_RUN_ID": "x", "CUDA_VISIBLE_DEVICES": "0", "LIT_PREFOPT_PROBE": "kept"}.items():
        monkeypatch.setenv(name, value)
    env = child_env(None)
    assert not {"SLURM_NTASKS", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT", "TORCHELASTIC_RUN_ID"} & set(env)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["LIT_PREFOPT_PROBE"] == "kept"
