"""Strategy config options: Lightning's own by name, and FSDP2 sized for pure data parallelism
(flat over every process, or hybrid: sharded within a node, replicated across nodes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.precision import MixedPrecision, Precision
from lightning.pytorch.strategies import ModelParallelStrategy
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy

from lit_prefopt.checkpointing.sharded import ShardedCheckpointWriter
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

    Checkpoints are distributed-checkpoint directories written by `checkpoint_writer`
    (lit_prefopt.checkpointing.sharded: staged and renamed into place, optionally in the
    background), so a crash while saving never leaves a half-written checkpoint.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1, **kwargs)
        self.checkpoint_writer = ShardedCheckpointWriter()

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
        if not self._save_distributed_checkpoint:  # one file, gathered on rank 0, written atomically
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__}.save_checkpoint takes no storage_options")
        path = Path(self.broadcast(str(filepath)))
        # The layout Lightning's ModelParallelStrategy writes and loads: tensors sharded, the rest in meta.pt.
        tensors = {"state_dict": checkpoint.pop("state_dict")}
        tensors.update({f"optimizer_{i}": state for i, state in enumerate(checkpoint.pop("optimizer_states", []))})
        self.checkpoint_writer.save(self, tensors, checkpoint, path)


class HybridShardedStrategy(FullyShardedStrategy):
    """HSDP: FSDP2 within groups of `shard_size` processes, the groups replicas of each other.

    A flat mesh over several nodes makes every parameter all-gather and gradient reduce-scatter
    cross the slow inter-node network. Here they stay inside a shard group (by default the
    processes of one node, whose ranks are consecutive), and only one all-reduce of the already
    reduce-scattered gradient shards crosses between replicas. The device mesh has dimensions
    `replicate` x `shard` (what `fully_shard` takes for HSDP, see `sharding_mesh`), flattened into
    `data_parallel` so that every rank still reads its own share of the data.
    """

    def __init__(self, shard_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if shard_size is not None and shard_size < 1:
            raise ValueError(f"strategy.shard_size={shard_size} must be at least 1 (or null: the devices of one node)")
        self.shard_size = shard_size

    def setup_environment(self) -> None:
        shard = self.shard_size or self.num_processes
        if self.world_size % shard:
            raise ValueError(
                f"strategy.shard_size={shard} must divide the number of processes, {self.world_size} "
                f"(trainer.devices={self.num_processes} x trainer.num_nodes={self.num_nodes})"
            )
        super().setup_environment()
        mesh = init_device_mesh(
            self.root_device.type,
            (self.world_size // shard, shard, 1),
            mesh_dim_names=("replicate", "shard", "tensor_parallel"),
        )
        mesh["replicate", "shard"]._flatten("data_parallel")
        self._device_mesh = mesh
        self.lightning_module._device_mesh = mesh


def sharding_mesh(device_mesh: DeviceMesh) -> DeviceMesh:
    """The mesh `fully_shard` takes: 2-D (`replicate`, `shard`) under HSDP, else the 1-D data-parallel one."""
    if "replicate" in (device_mesh.mesh_dim_names or ()):
        return device_mesh["replicate", "shard"]
    return device_mesh["data_parallel"]
