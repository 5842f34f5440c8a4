"""bf16-mixed under FSDP2 on 2 CPU processes (gloo): what a training step really moves and runs.

The sharding's mixed-precision policy replaces autocast: parameters are all-gathered in bf16 from
float32 master shards, no autocast is active in the step, the reference is stored in bf16,
log-probs stay float32, and the gradient norm with its clipping costs one all-reduce per step.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.gloo import free_port


def worker(rank: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    import torch.distributed._functional_collectives as funcol
    from lightning.pytorch import Callback, Trainer

    from benchmarks.collectives import AllGatherCounter
    from lit_prefopt.criteria.dpo import DPO
    from lit_prefopt.data.datamodule import PreferenceDataModule
    from lit_prefopt.models.checkpoint import HFCheckpoint
    from lit_prefopt.module import PreferenceModule
    from lit_prefopt.paths import sample_data_path
    from lit_prefopt.strategies import FullyShardedStrategy

    seen: dict = {"scalar_all_reduces": [], "autocast": [], "logps": []}
    gathers = AllGatherCounter().install()
    plain_all_reduce, functional_all_reduce = dist.all_reduce, funcol.all_reduce

    def counting(real):
        def all_reduce(tensor, *args, **kwargs):
            if gathers.recording and tensor.numel() == 1:
                seen["scalar_all_reduces"][-1] += 1
            return real(tensor, *args, **kwargs)
        return all_reduce

    dist.all_reduce, funcol.all_reduce = counting(plain_all_reduce), counting(functional_all_reduce)

    class Probe(Callback):
        def on_train_batch_start(self, *args) -> None:
            gathers.recording = True
            seen["scalar_all_reduces"].append(0)

        def on_train_batch_end(self, *args) -> None:
            gathers.recording = False

    checkpoint = HFCheckpoint(path=model_dir, chunked_logprobs=16)
    module = PreferenceModule(checkpoint, DPO(), optimizer=partial(torch.optim.AdamW, lr=1e-3))
    pair_logps = module.pair_logps

    def observed_pair_logps(batch):
        seen["autocast"].append(torch.is_autocast_enabled("cpu"))
        logps = pair_logps(batch)
        seen["logps"].append((logps.chosen.dtype, logps.ref_chosen.dtype))
        return logps

    module.pair_logps = observed_pair_logps
    data = PreferenceDataModule(train_files=[str(sample_data_path("train.jsonl"))], batch_size=2, shuffle=False)
    data.set_tokenizer(checkpoint.load_tokenizer())
    trainer = Trainer(accelerator="cpu", devices=2, strategy=FullyShardedStrategy(), precision="bf16-mixed",
                      max_steps=2, gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[Probe()])
    trainer.fit(module, datamodule=data)
    policy_dtypes = {p.to_local().dtype for p in module.policy.parameters()}
    reference_dtypes = {p.to_local().dtype for p in module.reference.parameters()}
    torch.save({**seen, "gathered": dict(gathers.sent_numel), "policy": policy_dtypes, "reference": reference_dtypes}, f"{out}.{rank}")


@pytest.mark.slow
def test_bf16_mixed_gathers_bf16_without_autocast_and_reduces_the_norm_once(tiny_llama, tmp_path: Path) -> None:
    out = str(tmp_path / "probe")
    mp.start_processes(worker, args=(free_port(), tiny_llama.path, out), nprocs=2, start_method="spawn")
    for rank in range(2):
        seen = torch.load(f"{out}.{rank}", weights_only=False)
        assert set(seen["gathered"]) == {"torch.bfloat16"}, seen["gathered"]
        assert seen["autocast"] == [False, False]
        assert seen["policy"] == {torch.float32}, "float32 master shards"
        assert seen["reference"] == {torch.bfloat16}, "model.reference_dtype=null under bf16-mixed"
        assert seen["logps"] == [(torch.float32, torch.float32)] * 2
        # The norm for logging and clipping (trainer.gradient_clip_val=1.0) together.
        assert seen["scalar_all_reduces"] == [1, 1]
