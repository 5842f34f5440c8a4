"""`train(cfg)`: compose data, module and trainer from the config, fit, export, report.

Everything that can be wrong with the config or the data is checked before any model loads:
criterion hyperparameters, data settings, the model path, and a scan of the data files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from transformers import AutoModelForCausalLM

from lit_prefopt.checkpointing.config_check import DIGESTS_KEY, check_resume_config, data_digests
from lit_prefopt.checkpointing.files import AtomicCheckpointIO
from lit_prefopt.checkpointing.resume import checkpoint_step, read_checkpoint, resolve_ckpt_path
from lit_prefopt.checkpointing.run_dir import claim_run_dir
from lit_prefopt.checkpointing.schedule import ScheduleAtRestoredStep
from lit_prefopt.checkpointing.signals import StopOnSignal
from lit_prefopt.outputs.csv_logger import drop_rows_after_checkpoint
from lit_prefopt.models.lora import has_adapters, merge_adapters
from lit_prefopt.models.sharding import full_state_dict
from lit_prefopt.module import PreferenceModule
from lit_prefopt.outputs.report import write_curves, write_summary


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (val/... and train/...)."""
    started = time.time()
    run_dir = Path(cfg.run_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    if ckpt_path is None and rank_zero_only.rank == 0:
        claim_run_dir(run_dir, resume_requested=cfg.ckpt_path is not None)
    config = {**OmegaConf.to_container(cfg, resolve=True), DIGESTS_KEY: data_digests(cfg.data)}
    if ckpt_path is not None:
        saved = read_checkpoint(Path(ckpt_path)).config
        check_resume_config(saved, config, Path(ckpt_path), cfg.get("resume_allow_changes", False))
    seed_everything(cfg.seed, workers=True)
    # Denormal floats made CPU steps several times slower (DESIGN.md section 8).
    torch.set_flush_denormal(True)

    criterion = build(cfg.criterion)
    checkpoint = build(cfg.model)
    datamodule = build(cfg.data)
    checkpoint.prepare()
    tokenizer = checkpoint.load_tokenizer()
    datamodule.set_tokenizer(tokenizer)
    scan = datamodule.scan()

    module = PreferenceModule(
        checkpoint=checkpoint,
        criterion=criterion,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        reference_from_data=scan.has_reference_scores,
        max_consecutive_skips=cfg.max_consecutive_skips,
        config=config,
    )
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(module.config)

    initial: dict[str, float] = {}
    if ckpt_path is None and cfg.validate_before_training and cfg.data.get("val_files"):
        initial = _as_floats(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
    elif ckpt_path is not None and trainer.is_global_zero:
        drop_rows_after_checkpoint(run_dir / "metrics.csv", checkpoint_step(Path(ckpt_path)))

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    metrics = _as_floats(trainer.callback_metrics)
    if cfg.data.get("val_files") and module.last_validated_step != trainer.global_step:
        metrics.update(_as_floats(trainer.validate(module, datamodule=datamodule, verbose=False)[0]))

    if cfg.export_hf:
        export_hf(module, tokenizer, run_dir / "hf", trainer.is_global_zero)
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.save()
        write_curves(run_dir / "metrics.csv", run_dir / "curves.png")
        write_summary(run_dir, trainer, initial, metrics, time.time() - started, cfg.export_hf)
    return metrics


def build(node: DictConfig, **kwargs: Any) -> Any:
    """`instantiate`, but a bad value surfaces as its own error (which names the config key)
    rather than wrapped in Hydra's InstantiationException."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, (ValueError, FileNotFoundError)):
            raise error.__cause__ from None
        raise


def build_trainer(cfg: DictConfig) -> Trainer:
    """The Lightning Trainer with the configured strategy, loggers and callbacks."""
    loggers = [instantiate(node) for node in (cfg.get("logger") or {}).values()]
    callbacks = [instantiate(node) for node in (cfg.get("callbacks") or {}).values()]
    callbacks += [StopOnSignal(Path(cfg.run_dir), cfg.get("run_name")), ScheduleAtRestoredStep()]
    return instantiate(
        cfg.trainer, strategy=instantiate(cfg.strategy), logger=loggers or False, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def export_hf(module: PreferenceModule, tokenizer: Any, target: Path, is_global_zero: bool) -> None:
    """The final policy and tokenizer in `save_pretrained` format, loadable by transformers.

    A sharded (FSDP) policy is gathered first; every rank takes part, rank 0 writes.
    """
    policy = module.policy
    if module.device_mesh is not None:
        weights = full_state_dict(policy)
        if not is_global_zero:
            return
        policy = AutoModelForCausalLM.from_config(policy.config, dtype=policy.dtype)
        policy.load_state_dict(weights)
    if has_adapters(policy):
        policy = merge_adapters(policy)
    if is_global_zero:
        policy.save_pretrained(target, safe_serialization=True)
        tokenizer.save_pretrained(target)


def _as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}
