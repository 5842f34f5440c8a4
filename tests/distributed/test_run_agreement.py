"""Every process of a run agrees on its run directory and on the checkpoint it resumes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lit_prefopt.run_agreement import check_agreement, require_shared_run_dir
from tests.entry_process import entry_env
from tests.gloo import gloo_group, rendezvous, spawn_ranks

TORCHRUN_RANK = {"TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
SRUN_TASK = {"SLURM_NTASKS": "16", "SLURM_PROCID": "3", "SLURM_JOB_NAME": "dpo"}


@pytest.mark.parametrize("env,num_nodes", [(TORCHRUN_RANK, 1), (SRUN_TASK, 2), ({}, 2)])
def test_independently_started_processes_need_a_run_name(env: dict[str, str], num_nodes: int) -> None:
    with pytest.raises(ValueError, match="run_name is required"):
        require_shared_run_dir(None, run_dir_given=False, num_nodes=num_nodes, env=env)
    require_shared_run_dir("exp1", run_dir_given=False, num_nodes=num_nodes, env=env)
    require_shared_run_dir(None, run_dir_given=True, num_nodes=num_nodes, env=env)


@pytest.mark.parametrize("env", [
    {},  # one process
    {"LOCAL_RANK": "1", "WORLD_SIZE": "2"},  # a rank Lightning's launcher started, given rank 0's hydra.run.dir
    {**TORCHRUN_RANK, "WORLD_SIZE": "1"},  # torchrun with one process
    {**SRUN_TASK, "SLURM_JOB_NAME": "bash"},  # an interactive SLURM shell: Lightning launches the ranks
])
def test_a_dated_run_dir_is_fine_when_one_process_decides(env: dict[str, str]) -> None:
    require_shared_run_dir(None, run_dir_given=False, num_nodes=1, env=env)



def _compare(rank: int, rendezvous_file: str, out_dir: str) -> None:
    """Rank 1 first sees rank 0's checkpoint, then (as on a node without the shared filesystem) none."""
    with gloo_group(rank, rendezvous_file):
        outcomes = []
        for ckpt_path in ["a/last.ckpt", "a/last.ckpt" if rank == 0 else None]:
            try:
                check_agreement(Path(out_dir), ckpt_path)
                outcomes.append("agreed")
            except RuntimeError as error:
                outcomes.append(str(error))
    Path(out_dir, f"rank{rank}.txt").write_text("\n".join(outcomes))


@pytest.mark.slow
def test_ranks_that_see_different_checkpoints_all_stop(tmp_path: Path) -> None:
    spawn_ranks(_compare, (rendezvous(tmp_path), str(tmp_path)))
    for rank in range(2):
        agreed, disagreed = (tmp_path / f"rank{rank}.txt").read_text().split("\n")
        assert agreed == "agreed"
        assert "rank 0: run_dir=" in disagreed and "ckpt_path=a/last.ckpt; rank 1:" in disagreed
        assert disagreed.endswith("give every process the same run_name.")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun")
def test_torchrun_without_run_name_is_refused_before_any_work(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    result = subprocess.run(
        [torchrun, "--nproc-per-node=2", "-m", "lit_prefopt", "strategy=fsdp", "trainer.devices=2"],
        cwd=tmp_path, env=entry_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "run_name is required here (torchrun started 2 processes)" in result.stderr
    assert not list(tmp_path.glob("outputs/*/*/checkpoints")), "nothing was trained"
