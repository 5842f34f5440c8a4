"""lit_prefopt against TRL's DPOTrainer on one GPU: a Llama-3.2-1B-shaped model, 8 pairs per step.

The model is built from a config with random weights (16 layers, hidden 2,048, 32 query and 8
key/value heads, MLP 8,192, vocabulary 128,256, tied embeddings), so nothing is downloaded; the
tokenizer is trained on the bundled sample pairs and the pairs are those joined into longer ones
(`inputs.build_inputs`). Both systems keep float32 policy weights under bf16 autocast (TRL
`bf16=True`, lit_prefopt `trainer=gpu`, i.e. `bf16-mixed`) with a live reference model, and each
runs in its own process through the CPU benchmark's runners (`benchmarks.run.execute`), so the
timing, token count and step log are the same code as there. Each runs at its own defaults
otherwise, which differ: TRL's reference is float32 and it runs without gradient checkpointing
(its faster setting), lit_prefopt's reference is bfloat16 (`model.reference_dtype` null: the
compute dtype) and it checkpoints every decoder layer but the last; the ratios include those.

MFU is model FLOPs per second (non-padding tokens, the prompt counted in both rows as the padded
layout computes it: `benchmarks.flops.step_flops`) over the bf16 matmul peak measured here on
this GPU; runs that encode the prompt once do less work than that count, so theirs is "effective".
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig

from benchmarks.child import child_env
from benchmarks.fixture import ModelShape
from benchmarks.flops import matmul_flops_per_s
from benchmarks.gpu.inputs import build_inputs
from benchmarks.run import PLAIN, add_flops, execute
from benchmarks.systems import RunSpec, Workload

LLAMA_3_2_1B = ModelShape(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                          intermediate_size=8192, vocab_size=128_256, max_position_embeddings=8192,
                          tie_word_embeddings=True)


def compare_runs(gpu: bool) -> list[RunSpec]:
    """TRL (no gradient checkpointing: its faster setting when memory allows), lit_prefopt with its
    kernels off, and lit_prefopt's defaults; all DPO with a live reference."""
    trl = {"gradient_checkpointing": False, "bf16": gpu, "use_cpu": not gpu}
    lit = {"trainer": "gpu", "trainer.devices": 1} if gpu else {}
    return [
        RunSpec("trl", "trl", "dpo", trl, True),
        RunSpec("lit_plain", "lit_prefopt", "dpo", {**PLAIN, **lit}, True),
        RunSpec("lit", "lit_prefopt", "dpo", lit, True),
    ]


def compare_with_trl(root: Path, shape: ModelShape, group: int, max_seq_len: int, steps: int, batch_size: int,
                     gpu: bool, timeout_s: float, names: tuple[str, ...]) -> dict:
    """The runs of `compare_runs` named in `names` (TRL first), each in its own process; rates,
    peak GPU memory, MFU and ratios against TRL."""
    checkpoint, pairs = build_inputs(root / "inputs", shape, group, max_seq_len)
    work = Workload(checkpoint, pairs.path, max_seq_len, batch_size, 1e-6, steps)
    config = AutoConfig.from_pretrained(checkpoint)
    peak = matmul_flops_per_s((4096, 8192), repeats=20, dtype=torch.bfloat16, device="cuda") if gpu else None
    env = child_env(None)
    results = []
    for run in (run for run in compare_runs(gpu) if run.name in names):
        result = execute(run, work, root, env, timeout_s)
        result["live_reference"] = run.live_reference
        if peak is not None:
            add_flops(result, config, pairs.tokens_per_pair, peak)
            result["mfu"] = result.pop("flops_fraction", None)
        results.append(result)
    trl = results[0]
    for result in results[1:]:
        for key in ("pairs_per_s", "tokens_per_s", "peak_cuda_gib"):
            if result.get(key) and trl.get(key):
                result[f"{key}_vs_trl"] = result[key] / trl[key]
    return {"model": shape.__dict__, "parameters": sum(p.numel() for p in _meta_model(config).parameters()),
            "pairs": pairs.as_dict(), "batch_size": batch_size, "steps": steps,
            "bf16_matmul_flops_per_s": peak, "runs": results, "passed": all("pairs_per_s" in r for r in results)}


def _meta_model(config):
    """The model built on the meta device: parameter count without memory (tied weights once)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)
