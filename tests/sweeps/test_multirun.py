"""A real Hydra multirun: every job in its own directory, one W&B run per job, grouped per sweep."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.entry_process import run_lit_prefopt
from tests.wandb_offline import read_offline_run

TINY = ("experiment=debug", "trainer.max_steps=3", "data.batch_size=2", "validate_before_training=false",
        "export_hf=false")


def train_losses(job: Path) -> list[float]:
    with open(job / "metrics.csv", newline="") as file:
        return [float(row["train/loss"]) for row in csv.DictReader(file) if row.get("train/loss")]


@pytest.mark.slow
def test_two_job_multirun_writes_two_job_directories(tmp_path: Path) -> None:
    run_lit_prefopt("-m", "criterion=dpo,simpo", "logger=wandb", *TINY, cwd=tmp_path)

    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert [job.name for job in jobs] == ["0", "1"]
    run_ids = set()
    for job, criterion in zip(jobs, ("dpo", "simpo")):
        assert f"criterion={criterion}" in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        assert len(train_losses(job)) == 3
        assert (job / "checkpoints" / "last.ckpt").exists()
        (wandb_dir,) = (job / "wandb").glob("offline-run-*")  # a run of its own: wandb.finish() between jobs
        run = read_offline_run(wandb_dir)
        assert Path(run.group) == sweep.relative_to(tmp_path), "jobs of a sweep share its W&B group"
        composed = OmegaConf.load(job / ".hydra" / "config.yaml")
        assert run.config["criterion"]["_target_"] == composed.criterion._target_, "the job's config is the run's"
        assert run.metric("train/loss") == pytest.approx(train_losses(job))
        run_ids.add(wandb_dir.name)
    assert len(run_ids) == 2
