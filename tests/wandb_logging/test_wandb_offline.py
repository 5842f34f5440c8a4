"""W&B under WANDB_MODE=offline: read the run's own files back and check what a dashboard shows."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lit_prefopt.callbacks.samples_table import COLUMNS
from lit_prefopt.outputs.wandb_logger import finish_wandb_run
from lit_prefopt.train import train
from tests.wandb_offline import read_offline_run


@pytest.mark.slow
def test_offline_run_holds_config_history_and_samples_table(compose) -> None:
    cfg = compose("logger=wandb", "experiment=debug", "trainer.max_steps=4", "trainer.val_check_interval=2",
                  "logger.wandb.group=my-group", "callbacks.wandb_samples.num_pairs=2",
                  "callbacks.wandb_samples.every_n_validations=2", "callbacks.wandb_samples.max_new_tokens=8",
                  "export_hf=false")
    try:
        train(cfg)
    finally:
        finish_wandb_run()
    run_dir = Path(cfg.run_dir)
    (directory,) = (run_dir / "wandb").glob("offline-run-*")
    run = read_offline_run(directory)

    assert run.config["criterion"]["beta"] == cfg.criterion.beta, "the resolved config is the run's config"
    assert run.config["run_dir"] == str(run_dir)
    assert (run.group, run.job_type, run.tags) == ("my-group", "train", ["dpo", "tiny"])

    with open(run_dir / "metrics.csv", newline="") as file:
        csv_losses = [float(r["train/loss"]) for r in csv.DictReader(file) if r.get("train/loss")]
    assert len(csv_losses) == 4 and run.metric("train/loss") == pytest.approx(csv_losses)
    steps = [row["trainer/global_step"] for row in run.history if "train/loss" in row]
    assert steps == sorted(steps) and len(set(steps)) == 4, "train/ metrics are logged against the optimizer step"

    # Validations: before training, at step 2, at step 4 (the last); every second one logs the table.
    tables = run.tables("val/samples")
    assert len(tables) == 2
    assert [row[0] for row in tables[0]["data"]] == [0, 0] and [row[0] for row in tables[1]["data"]] == [4, 4]
    for table in tables:
        assert table["columns"] == COLUMNS and len(table["data"]) == 2
        for row in table["data"]:
            values = dict(zip(COLUMNS, row))
            assert values["prompt"] and values["chosen"] and values["rejected"]
            assert isinstance(values["greedy"], str)
            for name in ("reward_chosen", "reward_rejected", "reward_greedy"):
                assert isinstance(values[name], float), name
