"""A user's own config files, outside the package: fairseq2's --config-file, done the Hydra way."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.entry_process import run_lit_prefopt

MY_RUN = """\
# My run: the package's train config, changed where I say.
defaults:
  - train
  - override criterion: simpo
  - _self_

run_name: from_my_file
criterion:
  beta: 3.0
trainer:
  max_steps: 2
"""

MY_EXPERIMENT = """\
# @package _global_
defaults:
  - override /criterion: simpo

criterion:
  beta: 4.0
optimizer:
  lr: 1.0e-4
"""


@pytest.mark.slow
def test_run_from_a_config_file_outside_the_package(tmp_path: Path) -> None:
    configs = tmp_path / "my_configs"
    configs.mkdir()
    (configs / "my_run.yaml").write_text(MY_RUN)
    run_lit_prefopt("--config-dir", str(configs), "--config-name", "my_run", "experiment=debug",
                    "validate_before_training=false", "export_hf=false", cwd=tmp_path)

    run = tmp_path / "outputs" / "from_my_file"
    composed = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert composed.criterion.beta == 3.0 and "gamma_beta_ratio" in composed.criterion
    with open(run / "metrics.csv", newline="") as file:
        assert len([r for r in csv.DictReader(file) if r.get("train/loss")]) == 2


def test_experiment_file_found_through_the_search_path(compose, tmp_path: Path) -> None:
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "my_exp.yaml").write_text(MY_EXPERIMENT)
    cfg = compose(f"hydra.searchpath=[file://{tmp_path / 'mine'}]", "experiment=my_exp")
    assert cfg.criterion.beta == 4.0 and cfg.optimizer.lr == 1.0e-4 and "gamma_beta_ratio" in cfg.criterion
