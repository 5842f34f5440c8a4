"""Run `python -m lit_prefopt ...` in a subprocess, the way a user does, from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_lit_prefopt(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the Hydra entry with `args` in `cwd`; fail the test with its output if it fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-m", "lit_prefopt", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result
