"""A disk that fills up while a checkpoint is written: on a real small tmpfs, end to end.

(The same path with an injected ENOSPC, which runs everywhere, is in tests/e2e/test_atomic_checkpoints.py.)
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.entry_process import entry_env

# Room for the run's small files and one 2.5 MB tiny-model checkpoint (step=1.ckpt), not for step=2.ckpt too.
SIZE = "4m"


def mount_command(disk: Path) -> list[str] | None:
    """How to run a shell script with a small tmpfs at `disk`: directly as root, else in a user
    namespace (unshare -rm); None where neither is allowed."""
    for prefix in ([], ["unshare", "-rm"]):
        if prefix and shutil.which("unshare") is None:
            continue
        probe = f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(disk))} && umount {shlex.quote(str(disk))}"
        if subprocess.run([*prefix, "sh", "-c", probe], capture_output=True).returncode == 0:
            return [*prefix, "sh", "-c"]
    return None


@pytest.mark.slow
def test_full_disk_stops_the_run_and_leaves_no_partial_checkpoint(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    runner = mount_command(disk)
    if runner is None:
        pytest.skip("mounting a tmpfs needs root or unprivileged user namespaces, neither is available here")
    overrides = "run_name=full trainer.max_steps=3 data.batch_size=2 data.val_files=null checkpoint.every_n_steps=1"
    checkpoints = disk / "outputs" / "full" / "checkpoints"
    script = (
        f"mount -t tmpfs -o size={SIZE} tmpfs {disk} && cd {disk} && {sys.executable} -m lit_prefopt {overrides}; "
        f"rc=$?; echo LISTING; ls -a {checkpoints} {disk / 'outputs' / 'full'}; cd /; umount {disk}; exit $rc"
    )
    result = subprocess.run([*runner, script], env=entry_env(), capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"could not write the checkpoint {checkpoints / 'step=2.ckpt'}: the disk is full" in output, output[-3000:]
    listing = result.stdout.split("LISTING")[1].split()
    assert "step=1.ckpt" in listing and "last.ckpt" in listing, "the checkpoint that fitted is kept, last names it"
    assert "step=2.ckpt" not in listing and not any(name.endswith(".saving") for name in listing), listing
    assert "hf" not in listing
