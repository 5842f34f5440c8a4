"""HSDP (`strategy=hsdp`) through the real CLI on 2 CPU processes (gloo), against one process.

2 processes make the two extreme 2-D meshes: `shard_size=1` is 2 replicas of 1 shard (pure
replication, like DDP) and `shard_size=2` is 1 replica of 2 shards (like flat FSDP). Both must
train exactly like one process; the checkpoint's chunk layout shows which mesh was applied.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.entry_process import run_lit_prefopt
from tests.distributed.test_strategies import COMMON, PLAIN, losses

SIX_STEPS = tuple(o.replace("max_steps=4", "max_steps=6") for o in COMMON)


def run_hsdp(shard_size: int, cwd: Path, *overrides: str, common: tuple[str, ...] = COMMON) -> Path:
    run_lit_prefopt(f"run_name=hsdp{shard_size}", "strategy=hsdp", f"strategy.shard_size={shard_size}",
                    "trainer.devices=2", "data.batch_size=2", *common, *overrides, cwd=cwd)
    return cwd / "outputs" / f"hsdp{shard_size}"


def chunks_per_tensor(checkpoint: Path, name: str) -> int:
    """How many pieces a model tensor was saved in: one per shard of the mesh's `shard` dimension
    (replicas hold the same piece, which the distributed checkpoint stores once)."""
    from torch.distributed.checkpoint import FileSystemReader

    metadata = FileSystemReader(str(checkpoint)).read_metadata().state_dict_metadata
    return len(metadata[f"state_dict.{name}"].chunks)


@pytest.fixture(scope="module")
def single_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 steps of one process with the 2-process runs' global batch."""
    cwd = tmp_path_factory.mktemp("single")
    run_lit_prefopt("run_name=single", "data.batch_size=4", *SIX_STEPS, *PLAIN, cwd=cwd)
    return cwd / "outputs" / "single"


@pytest.mark.slow
def test_one_replica_of_two_shards_matches_one_process(single_run: Path, tmp_path: Path) -> None:
    run_dir = run_hsdp(2, tmp_path)
    assert losses(run_dir) == pytest.approx(losses(single_run)[:4], abs=1e-5)
    assert chunks_per_tensor(run_dir / "checkpoints" / "last.ckpt", "policy.model.embed_tokens.weight") == 2


@pytest.mark.slow
def test_two_replicas_of_one_shard_match_one_process_and_resume(single_run: Path, tmp_path: Path) -> None:
    run_dir = run_hsdp(1, tmp_path)
    assert chunks_per_tensor(run_dir / "checkpoints" / "last.ckpt", "policy.model.embed_tokens.weight") == 1
    run_hsdp(1, tmp_path, "ckpt_path=last", common=SIX_STEPS)
    assert losses(run_dir) == pytest.approx(losses(single_run), abs=1e-5)

    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(run_dir / "hf").state_dict()
    expected = AutoModelForCausalLM.from_pretrained(single_run / "hf").state_dict()
    for name, tensor in expected.items():
        torch.testing.assert_close(exported[name], tensor, atol=1e-5, rtol=1e-4, msg=name)


def test_shard_size_below_one_is_refused() -> None:
    from lit_prefopt.strategies import HybridShardedStrategy

    with pytest.raises(ValueError, match="strategy.shard_size=0"):
        HybridShardedStrategy(shard_size=0)
