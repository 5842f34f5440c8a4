"""Run `python -m lit_prefopt ...` in a subprocess, the way a user does, from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def entry_env() -> dict[str, str]:
    """The test environment plus the repo on PYTHONPATH (one thread: the ranks share 2 cores)."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def start_lit_prefopt(*args: str, cwd: Path) -> subprocess.Popen:
    """Start the Hydra entry in its own process group (so a test can kill it and its ranks)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lit_prefopt", *args], cwd=cwd, env=entry_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


def run_lit_prefopt(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the Hydra entry with `args` in `cwd`; fail the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "lit_prefopt", *args], cwd=cwd, env=entry_env(), capture_output=True, text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result
