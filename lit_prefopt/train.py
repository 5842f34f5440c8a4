"""`train(cfg)`: compose data, module and trainer from the config, fit, export, report.

Everything that can be wrong with the config or the data is checked before any model loads:
optimizer, scheduler, trainer and sweep settings (first, before the run directory is touched),
criterion hyperparameters, data settings, the model path, and a scan of the data files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lit_prefopt.checkpointing.config_check import DIGESTS_KEY, check_resume_config, shared_data_digests
from lit_prefopt.checkpointing.files import AtomicCheckpointIO
from lit_prefopt.checkpointing.resume import checkpoint_step, read_checkpoint, resolve_ckpt_path
from lit_prefopt.checkpointing.retention import save_checkpoint_now
from lit_prefopt.checkpointing.run_dir import claim_run_dir
from lit_prefopt.checkpointing.schedule import ScheduleAtRestoredStep
from lit_prefopt.checkpointing.signals import StopOnSignal
from lit_prefopt.config_checks import check_config
from lit_prefopt.criterion_modules import module_class
from lit_prefopt.data.shared_scan import local_rank, shared_scan
from lit_prefopt.models.export import check_export_dtype, export_hf
from lit_prefopt.outputs.csv_logger import drop_rows_after_checkpoint
from lit_prefopt.outputs.report import write_curves, write_summary
from lit_prefopt.outputs.run_summary import format_run_summary
from lit_prefopt.plan import plan_memory
from lit_prefopt.run_agreement import RunAgreement, hydra_run_dir_given, require_shared_run_dir
from lit_prefopt.strategies import FullyShardedStrategy


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job and return its final metrics (val/... and train/...)."""
    if cfg.get("plan"):
        print(plan_memory(cfg).describe())
        return {}
    started = time.time()
    check_config(cfg)
    check_async_save(cfg)
    require_shared_run_dir(cfg.run_name, hydra_run_dir_given(), cfg.trainer.get("num_nodes", 1))
    run_dir = Path(cfg.run_dir)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    if ckpt_path is None and rank_zero_only.rank == 0:
        claim_run_dir(run_dir, resume_requested=cfg.ckpt_path is not None)
    # Once per node, shared through the run directory like the data scan below.
    digests = shared_data_digests(cfg.data, run_dir, local_rank())
    config = {**OmegaConf.to_container(cfg, resolve=True), DIGESTS_KEY: digests}
    if ckpt_path is not None:
        saved = read_checkpoint(Path(ckpt_path)).config
        check_resume_config(saved, config, Path(ckpt_path), cfg.get("resume_allow_changes", False))
    seed_everything(cfg.seed, workers=True)
    # Denormal floats made CPU steps several times slower (docs/ARCHITECTURE.md#cpu-performance-notes).
    torch.set_flush_denormal(True)

    check_export_dtype(cfg.get("export_dtype"))
    criterion = build(cfg.criterion)
    checkpoint = build(cfg.model)
    datamodule = build(cfg.data)
    checkpoint.prepare()
    tokenizer = checkpoint.load_tokenizer()
    datamodule.set_tokenizer(tokenizer)
    # Once per node, shared through the run directory (no process group exists yet): shared_scan.py.
    scan_key = {DIGESTS_KEY: config[DIGESTS_KEY], "data": config["data"]}
    scan = shared_scan(datamodule.scan, run_dir, scan_key, local_rank())

    module = module_class(type(criterion))(
        checkpoint,
        criterion=criterion,
        tokenizer=tokenizer,
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.scheduler) if cfg.get("scheduler") else None,
        reference_from_data=scan.has_reference_scores,
        max_consecutive_skips=cfg.max_consecutive_skips,
        config=config,
    )
    trainer = build_trainer(cfg)
    trainer.callbacks.append(RunAgreement(run_dir, ckpt_path))
    for logger in trainer.loggers:
        logger.log_hyperparams(module.config)

    initial: dict[str, float] = {}
    if ckpt_path is None and cfg.validate_before_training and cfg.data.get("val_files"):
        initial = _as_floats(trainer.validate(module, datamodule=datamodule, verbose=False)[0])
    elif ckpt_path is not None and trainer.is_global_zero:
        drop_rows_after_checkpoint(run_dir / "metrics.csv", checkpoint_step(Path(ckpt_path)))

    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    # The final step once, last.ckpt pointing at it (done by the checkpoint callback at the end of fit, if any).
    save_checkpoint_now(trainer, run_dir / "checkpoints" / "last.ckpt")
    metrics = _as_floats(trainer.callback_metrics)
    if cfg.data.get("val_files") and module.last_validated_step != trainer.global_step:
        metrics.update(_as_floats(trainer.validate(module, datamodule=datamodule, verbose=False)[0]))

    if cfg.export_hf:
        export_hf(module, tokenizer, run_dir / "hf", trainer.is_global_zero, cfg.get("export_dtype"))
    if trainer.is_global_zero:
        for logger in trainer.loggers:
            logger.save()
        write_curves(run_dir / "metrics.csv", run_dir / "curves.png")
        summary = write_summary(run_dir, trainer, initial, metrics, time.time() - started, cfg.export_hf)
        print(format_run_summary(summary, run_dir), flush=True)
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
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a progress bar callback then
        callbacks = [callback for callback in callbacks if not isinstance(callback, ProgressBar)]
    callbacks += [StopOnSignal(Path(cfg.run_dir), cfg.get("run_name")), ScheduleAtRestoredStep()]
    return instantiate(
        cfg.trainer, strategy=checkpointing_strategy(cfg), logger=loggers or False, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
    )


def check_async_save(cfg: DictConfig) -> None:
    """`checkpoint.async_save` needs sharded checkpoints: their write is spread over all ranks and
    copied to host memory first. A single-file checkpoint is refused rather than written by a thread
    that would hold a second copy of the whole state on one process."""
    if not cfg.get("checkpoint", {}).get("async_save", False):
        return
    strategy = get_object(cfg.strategy._target_) if "_target_" in cfg.strategy else None
    sharded = isinstance(strategy, type) and issubclass(strategy, FullyShardedStrategy)
    if not sharded or not cfg.strategy.get("save_distributed_checkpoint", True):
        raise ValueError(
            "checkpoint.async_save=true needs sharded checkpoints (strategy=fsdp or strategy=hsdp with "
            "strategy.save_distributed_checkpoint=true); single-file checkpoints are written synchronously: "
            "set checkpoint.async_save=false"
        )


def checkpointing_strategy(cfg: DictConfig) -> Any:
    """The configured strategy, with `checkpoint.async_save` handed to its sharded checkpoint writer."""
    strategy = instantiate(cfg.strategy)
    if isinstance(strategy, FullyShardedStrategy):
        strategy.checkpoint_writer.async_save = bool(cfg.get("checkpoint", {}).get("async_save", False))
    return strategy


def _as_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}
