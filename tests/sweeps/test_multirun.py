"""A real Hydra multirun: every job in its own directory, one W&B run per job, grouped per sweep."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from tests.entry_process import entry_env, run_lit_prefopt
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


def test_a_failed_sweep_jobs_log_says_why_it_failed(tmp_path: Path) -> None:
    """Hydra prints the error to stderr only; each job's <job>/__main__.log gets it too (and the sweep goes on)."""
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text('{"src": "x"\n')
    failed = subprocess.run(
        [sys.executable, "-m", "lit_prefopt", "-m", f"data.train_files=[{tmp_path / 'a.jsonl'}],[{tmp_path / 'b.jsonl'}]"],
        cwd=tmp_path, env=entry_env(), capture_output=True, text=True,
    )
    assert failed.returncode != 0
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    for job, name in (("0", "a"), ("1", "b")):
        log = (sweep / job / "__main__.log").read_text()
        assert "The job failed: 1 bad record(s)" in log and f"{name}.jsonl:1: invalid JSON" in log
        assert "Traceback" in log
    assert "The job failed" not in failed.stderr, "the terminal has Hydra's own report, once"
