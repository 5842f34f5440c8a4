"""A resume compares its config with the one its checkpoint was trained with."""

from __future__ import annotations

import csv
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lit_prefopt.checkpointing.config_check import ResumeConfigMismatch, check_resume_config
from lit_prefopt.paths import sample_data_path
from lit_prefopt.train import train
from tests.entry_process import entry_env, run_lit_prefopt

FAST = ("data.batch_size=2", "validate_before_training=false", "data.val_files=null", "export_hf=false")


def test_check_lists_allowed_changes_and_refuses_what_changes_training(caplog) -> None:
    saved = {"seed": 0, "trainer": {"max_steps": 4, "log_every_n_steps": 1}, "criterion": {"beta": 0.1},
             "data": {"train_files": ["/a/train.jsonl"]}, "data_digests": {"train_files": "d1"}}
    moved = {**saved, "trainer": {"max_steps": 8, "log_every_n_steps": 5}, "data": {"train_files": ["/b/train.jsonl"]}}
    with caplog.at_level("INFO"):
        check_resume_config(saved, moved, Path("last.ckpt"), allow_changes=False)
    assert "trainer.max_steps: 4 -> 8" in caplog.text and "data.train_files" in caplog.text

    changed = {**moved, "seed": 1, "criterion": {"beta": 0.5}, "data_digests": {"train_files": "d2"}}
    with pytest.raises(ResumeConfigMismatch) as refused:
        check_resume_config(saved, changed, Path("last.ckpt"), allow_changes=False)
    listed = str(refused.value)
    assert "criterion.beta: 0.1 -> 0.5" in listed and "seed: 0 -> 1" in listed
    assert "data_digests.train_files" in listed and "world size" in listed and "trainer.max_steps" not in listed
    check_resume_config(saved, changed, Path("last.ckpt"), allow_changes=True)  # said explicitly: continues


@pytest.mark.parametrize("final, offered", [(0.1, "scheduler.total_steps=4 (the rate then stays"), (0.0, "start a new run")])
def test_extending_a_schedule_offers_keeping_it_only_where_it_still_trains(final: float, offered: str) -> None:
    saved = {"trainer": {"max_steps": 4}, "scheduler": {"total_steps": 4, "final_lr_scale": final}}
    longer = {"trainer": {"max_steps": 8}, "scheduler": {"total_steps": 8, "final_lr_scale": final}}
    with pytest.raises(ResumeConfigMismatch, match=r"scheduler\.total_steps: 4 -> 8") as refused:
        check_resume_config(saved, longer, Path("last.ckpt"), allow_changes=False)
    assert offered in str(refused.value) and "resume_allow_changes=true" in str(refused.value)


@pytest.mark.slow
def test_resume_refuses_another_criterion_or_data_and_accepts_moved_data(compose, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sample_data_path("train.jsonl"), data / "train.jsonl")
    train(compose("trainer.max_steps=2", "scheduler=constant", f"data.train_files=[{data / 'train.jsonl'}]", *FAST))

    with pytest.raises(ResumeConfigMismatch, match=r"criterion\._target_"):
        train(compose("trainer.max_steps=3", "scheduler=constant", "criterion=simpo", "ckpt_path=last", *FAST))
    other = tmp_path / "other.jsonl"
    other.write_text("".join(open(data / "train.jsonl").readlines()[:-1]))
    with pytest.raises(ResumeConfigMismatch, match=r"data_digests\.train_files"):
        train(compose("trainer.max_steps=3", "scheduler=constant", f"data.train_files=[{other}]", "ckpt_path=last",
                      *FAST))

    moved = tmp_path / "moved"
    shutil.move(data, moved)  # the same bytes under another path: the same training data
    train(compose("trainer.max_steps=3", "scheduler=constant", f"data.train_files=[{moved / 'train.jsonl'}]",
                  "ckpt_path=last", *FAST))


@pytest.mark.slow
def test_extending_a_cosine_schedule_is_refused_or_stretched_over_the_new_max_steps(compose) -> None:
    cfg = compose("trainer.max_steps=2", "checkpoint.every_n_steps=100", *FAST)
    train(cfg)
    # The cosine ends at 0: keeping it would train nothing after step 2, so that is not what the message offers.
    with pytest.raises(ResumeConfigMismatch, match=r"decays to 0 at step 2.*resume_allow_changes=true") as refused:
        train(compose("trainer.max_steps=4", "ckpt_path=last", *FAST))
    assert "rate then stays at its final value" not in str(refused.value)
    with pytest.raises(ValueError, match=r"scheduler\.total_steps=2 ends before trainer\.max_steps=4"):
        train(compose("trainer.max_steps=4", "scheduler.total_steps=2", "ckpt_path=last", *FAST))

    train(compose("trainer.max_steps=4", "ckpt_path=last", "resume_allow_changes=true", *FAST))
    with open(Path(cfg.run_dir) / "metrics.csv", newline="") as file:
        lrs = {int(r["step"]): float(r["train/lr"]) for r in csv.DictReader(file) if r.get("train/lr")}
    base = 3e-3  # the tiny model's learning rate: steps 0-1 on the cosine over 2 steps, 2-3 on the one over 4
    # Not 0 at step 2 (the old schedule's end, held by the optimizer state) and then a rise.
    assert lrs == pytest.approx({0: base, 1: base / 2, 2: base / 2, 3: base * 0.5 * (1 + math.cos(3 * math.pi / 4))})


@pytest.mark.slow
def test_a_refused_resume_leaves_the_runs_recorded_configs_as_they_were(tmp_path: Path) -> None:
    """The refused command's configs are not the run's: .hydra/config.yaml stays the one it trained with."""
    run = ("run_name=r", "scheduler=constant", *FAST)
    run_lit_prefopt(*run, "trainer.max_steps=2", cwd=tmp_path)
    hydra_dir = tmp_path / "outputs" / "r" / ".hydra"
    trained = {path.name: path.read_text() for path in hydra_dir.iterdir()}

    refused = subprocess.run([sys.executable, "-m", "lit_prefopt", *run, "trainer.max_steps=3", "criterion.beta=0.2",
                              "ckpt_path=last"], cwd=tmp_path, env=entry_env(), capture_output=True, text=True)
    assert refused.returncode != 0 and "criterion.beta: 0.1 -> 0.2" in refused.stderr, refused.stderr[-3000:]
    assert {path.name: path.read_text() for path in hydra_dir.iterdir()} == trained

    run_lit_prefopt(*run, "trainer.max_steps=3", "ckpt_path=last", cwd=tmp_path)
    assert (hydra_dir / "config.1.yaml").read_text() == trained["config.yaml"]
    assert "max_steps: 3" in (hydra_dir / "config.yaml").read_text()
    assert not (hydra_dir / "config.2.yaml").exists()
