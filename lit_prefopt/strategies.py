"""Strategy config options: Lightning's own by name, and FSDP2 sized for pure data parallelism."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.fsdp import MixedPrecisionPolicy

from lit_prefopt.precision import ShardedMixedPrecision, mp_policy


def named(name: str) -> str:
    """`strategy=auto` resolves to Lightning's own choice of strategy for the devices."""
    return name


class FullyShardedStrategy(ModelParallelStrategy):
    """FSDP2 over every process: Lightning's ModelParallelStrategy with tensor parallelism off.

    ModelParallelStrategy's defaults would make all processes of a node tensor-parallel; here the
    data-parallel size is always the world size. The module applies `fully_shard` itself in
    `configure_model`. Unlike Lightning's `FSDPStrategy` this also runs on CPU (gloo).

    `trainer.precision=bf16-mixed` becomes FSDP2's bf16 mixed-precision policy instead of autocast
    (lit_prefopt.precision says why); the module shards with `mp_policy`.

    Checkpoints are distributed-checkpoint directories, written to a staging directory and
    renamed into place, so a crash while saving never leaves a half-written `last.ckpt`.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)

    @property
    def precision_plugin(self) -> Precision:
        return super().precision_plugin

    @precision_plugin.setter
    def precision_plugin(self, plugin: Precision | None) -> None:
        if isinstance(plugin, MixedPrecision) and plugin.precision == "bf16-mixed":
            plugin = ShardedMixedPrecision()
        self._precision_plugin = plugin

    @property
    def mp_policy(self) -> MixedPrecisionPolicy:
        """The `fully_shard` mixed-precision policy for the policy and the reference."""
        return mp_policy(self.precision_plugin)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        path = Path(self.broadcast(str(filepath)))
        staging = path.with_name(path.name + ".saving")
        super().save_checkpoint(checkpoint, staging, storage_options)
        self.barrier("checkpoint-staged")
        if self.global_rank == 0:
            replace_directory(staging, path)
        self.barrier("checkpoint-renamed")


def replace_directory(staging: Path, target: Path) -> None:
    """Move `staging` to `target`; the previous `target` survives as `<target>.old` until then."""
    previous = target.with_name(target.name + ".old")
    if target.exists():
        _remove(previous)
        target.rename(previous)
    staging.rename(target)
    _remove(previous)


def _remove(path: Path) -> None:
    """Delete a checkpoint directory or, with `save_distributed_checkpoint=false`, a file."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
