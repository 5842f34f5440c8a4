"""The Optuna sweeper options compose with their search spaces and run trials as a multirun."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

import lit_prefopt  # noqa: F401  (resolvers)
from tests.entry_process import REPO, run_lit_prefopt

SEARCH_SPACES = {
    "dpo_optuna": {"criterion.beta", "optimizer.lr"},
    "simpo_optuna": {"criterion.beta", "criterion.gamma_beta_ratio", "optimizer.lr"},
}


def compose_with_hydra(*overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(REPO / "lit_prefopt" / "conf"), version_base="1.3"):
            return compose("train", overrides=list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.mark.parametrize("search", sorted(SEARCH_SPACES))
def test_search_composes_as_an_optuna_multirun(search: str) -> None:
    cfg = compose_with_hydra(f"hparams_search={search}")
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
    assert cfg.hydra.sweeper.direction == "maximize" and cfg.optimized_metric == "val/rewards/accuracy"
    assert set(cfg.hydra.sweeper.params) == SEARCH_SPACES[search]


@pytest.mark.parametrize("search", sorted(SEARCH_SPACES))
def test_every_searched_key_is_a_real_hyperparameter(search: str) -> None:
    """A trial's overrides (here the middle of each range) compose and build the criterion."""
    space = compose_with_hydra(f"hparams_search={search}").hydra.sweeper.params
    trial = [f"{key}={_middle(spec)}" for key, spec in space.items()]
    cfg = compose_with_hydra(f"hparams_search={search}", *trial)
    instantiate(cfg.criterion)
    instantiate(cfg.optimizer)


def _middle(spec: str) -> float:
    low, high = (float(x) for x in spec.rsplit("interval(", 1)[1].rstrip(")").split(","))
    return (low + high) / 2


@pytest.mark.slow
def test_dpo_optuna_runs_two_trials(tmp_path: Path) -> None:
    run_lit_prefopt("hparams_search=dpo_optuna", "hydra.sweeper.n_trials=2", "experiment=debug",
                    "trainer.max_steps=3", "data.batch_size=2", "validate_before_training=false", "export_hf=false",
                    cwd=tmp_path)
    (sweep,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(results["best_params"]) == SEARCH_SPACES["dpo_optuna"]
    trials = [sweep / "0", sweep / "1"]
    returned = [json.loads((t / "summary.json").read_text())["final_val"]["val/rewards/accuracy"] for t in trials]
    assert results["best_value"] == pytest.approx(max(returned)), "the best trial is the one with the highest accuracy"
    betas = []
    for trial in trials:
        overrides = dict(o.split("=", 1) for o in yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text()))
        betas.append(float(overrides["criterion.beta"]))
        assert 0.01 <= betas[-1] <= 1.0 and 1e-7 <= float(overrides["optimizer.lr"]) <= 5e-6
        with open(trial / "metrics.csv", newline="") as file:
            assert any(row.get("val/rewards/accuracy") for row in csv.DictReader(file))
    assert betas[0] != betas[1], "the sampler proposed the same trial twice"


def test_slurm_launcher_option_composes() -> None:
    import hydra_plugins.hydra_submitit_launcher  # noqa: F401  (the slurm extra, in dev)
    cfg = compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.partition=gpu")
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert cfg.hydra.launcher.tasks_per_node == cfg.hydra.launcher.gpus_per_node
