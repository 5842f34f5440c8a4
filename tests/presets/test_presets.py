"""Every preset in conf/experiment composes and builds its objects (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from lit_prefopt.paths import sample_data_path

REPO = Path(__file__).resolve().parents[2]
PRESETS = sorted(p.stem for p in (REPO / "lit_prefopt" / "conf" / "experiment").glob("*.yaml"))


def test_the_presets_the_issue_asks_for_exist() -> None:
    assert {"debug", "llama3_1_instruct", "llama3_1_instruct_constant_lr", "llama3_1_instruct_lr_anneal_0",
            "simpo_llama3_instruct"} <= set(PRESETS)


def compose_preset(compose, preset: str, tmp_path: Path) -> DictConfig:
    """The preset with the paths a user must give filled in (a checkpoint dir that is never loaded)."""
    cfg = compose(f"experiment={preset}")
    with open_dict(cfg):
        if OmegaConf.is_missing(cfg.model, "path"):
            cfg.model.path = str(tmp_path / "checkpoint")
        if OmegaConf.is_missing(cfg.data, "train_files"):
            cfg.data.train_files = [str(sample_data_path("train.jsonl"))]
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_instantiates(compose, tmp_path: Path, preset: str) -> None:
    cfg = compose_preset(compose, preset, tmp_path)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)

    instantiate(cfg.criterion)
    instantiate(cfg.model)
    instantiate(cfg.data)
    weights = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = instantiate(cfg.optimizer)([weights])
    instantiate(cfg.scheduler)(optimizer)
    instantiate(cfg.strategy)
    callbacks = [instantiate(node) for node in cfg.callbacks.values()]
    # GPU presets build their Trainer on this CPU machine with every other argument as configured.
    instantiate(cfg.trainer, accelerator="cpu", devices=1, strategy="auto", logger=False, callbacks=callbacks)


def scheduled_lr(cfg: DictConfig, step: int) -> float:
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(2, 2))])
    scheduler = instantiate(cfg.scheduler)(optimizer)
    return cfg.optimizer.lr * scheduler.lr_lambdas[0](step)


def test_llama3_1_instruct_has_fairseq2s_settings(compose, tmp_path: Path) -> None:
    cfg = compose_preset(compose, "llama3_1_instruct", tmp_path)
    assert cfg.criterion.beta == 0.1
    assert (cfg.optimizer.lr, list(cfg.optimizer.betas), cfg.optimizer.weight_decay) == (5.5e-6, [0.9, 0.95], 0.1)
    assert cfg.trainer.max_steps == 5000 and cfg.trainer.precision.startswith("bf16")
    assert cfg.checkpoint.every_n_steps == 1000
    assert cfg.strategy._target_.endswith("FullyShardedStrategy")
    assert scheduled_lr(cfg, 0) == pytest.approx(5.5e-6)
    assert scheduled_lr(cfg, 5000) == pytest.approx(0.2 * 5.5e-6)


@pytest.mark.parametrize(("preset", "final_scale"), [("llama3_1_instruct_constant_lr", 1.0),
                                                      ("llama3_1_instruct_lr_anneal_0", 0.0)])
def test_llama3_1_instruct_variants_change_only_the_schedule_end(compose, tmp_path, preset, final_scale) -> None:
    base = OmegaConf.to_container(compose_preset(compose, "llama3_1_instruct", tmp_path), resolve=True)
    cfg = compose_preset(compose, preset, tmp_path)
    variant = OmegaConf.to_container(cfg, resolve=True)
    base["scheduler"]["final_lr_scale"] = final_scale
    base.pop("run_dir"), variant.pop("run_dir")
    assert variant == base
    assert scheduled_lr(cfg, 2500) == pytest.approx(5.5e-6 if final_scale else 0.5 * 5.5e-6)
    assert scheduled_lr(cfg, 5000) == pytest.approx(final_scale * 5.5e-6)


def test_simpo_preset_has_the_papers_settings(compose, tmp_path: Path) -> None:
    cfg = compose_preset(compose, "simpo_llama3_instruct", tmp_path)
    criterion = instantiate(cfg.criterion)
    assert not criterion.needs_reference
    assert (cfg.criterion.beta, cfg.criterion.gamma_beta_ratio, cfg.optimizer.lr) == (2.5, 0.55, 1e-6)
    assert cfg.data.batch_size * cfg.trainer.accumulate_grad_batches * 4 == 128
    assert scheduled_lr(cfg, cfg.scheduler.warmup_steps) == pytest.approx(1e-6)
    assert scheduled_lr(cfg, cfg.trainer.max_steps) == pytest.approx(0.0)


def test_debug_preset_is_tiny_and_short(compose, tmp_path: Path) -> None:
    cfg = compose_preset(compose, "debug", tmp_path)
    assert cfg.model._target_.endswith("TinyLlama") and cfg.trainer.accelerator == "cpu"
    assert cfg.trainer.max_steps <= 10
