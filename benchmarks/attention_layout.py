"""Shared-prompt rows: collate and step seconds per batch, dense mask in the collate vs segment ids.

    python -m benchmarks.attention_layout [--lengths 4096 16384] [--before 5e9f9af]

Before (revision `--before`, loaded from git, nothing of it copied here): the collate built a
[B, 1, L, L] bool mask per batch, and the loader shipped it. After (the working tree): the
collate builds per-token segment ids, linear in L, and the backend of `model.attn_implementation`
builds its mask from them inside the step, on the model's device. Rows are [prompt | chosen |
rejected] of L tokens (half prompt, a quarter per completion, a little shorter for later pairs so
rows pad). The step is a forward and backward of a small random Llama (hidden 64, 2 layers, 4
query / 2 key-value heads) over the scored positions, with SDPA (the backend CPUs can train
with); pairs per step are kept to about `--step-tokens` row tokens so long rows fit in memory.
Medians of `--repeats` after one warm-up, before and after interleaved; the collate on one thread
(as in a DataLoader worker). Writes results/attention_layout.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from statistics import median

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lit_prefopt.data.shared_prefix import share_prompts
from lit_prefopt.kernels.attention.backends import attention_inputs

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
MODEL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128, vocab_size=1024)


def padded_pairs(pairs: int, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """2B right-padded rows (chosen then rejected) whose shared layout is about `length` tokens a row."""
    generator = torch.Generator().manual_seed(0)
    rows, scored = [], []
    prompts = [torch.randint(4, MODEL["vocab_size"], (length // 2,), generator=generator).tolist() for _ in range(pairs)]
    for completion in range(2):
        for index, prompt in enumerate(prompts):
            n = length // 4 - 8 * index - 4 * completion
            rows.append(prompt + torch.randint(4, MODEL["vocab_size"], (n,), generator=generator).tolist())
            scored.append([False] * len(prompt) + [True] * n)
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[True] * len(r) + [False] * (width - len(r)) for r in rows])
    completion_mask = torch.tensor([s + [False] * (width - len(s)) for s in scored])
    return ids, mask, completion_mask


def load_before(revision: str) -> types.ModuleType:
    """`lit_prefopt/data/shared_prefix.py` as it was at `revision` (dense mask in the collate)."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:lit_prefopt/data/shared_prefix.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("shared_prefix_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:lit_prefopt/data/shared_prefix.py", "exec"), module.__dict__)
    return module


def seconds(before: Callable[[], object], after: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median seconds of each, runs interleaved so that load from other processes hits both alike."""
    before(), after()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for run, into in ((before, times[0]), (after, times[1])):
            started = time.perf_counter()
            run()
            into.append(time.perf_counter() - started)
    return median(times[0]), median(times[1])


def step(model: LlamaForCausalLM, rows, inputs: Callable[[], dict]) -> None:
    """Forward and backward over the scored positions, the mask made by `inputs` inside the step."""
    model.zero_grad(set_to_none=True)
    scored = rows.scored
    logits = model(input_ids=rows.input_ids, use_cache=False, **inputs()).logits[scored.rows, scored.sources].float()
    targets = rows.input_ids[scored.rows, scored.targets]
    (logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(dim=1)).sum().backward()


def measure(length: int, collate_pairs: int, step_tokens: int, repeats: int, before: types.ModuleType) -> dict:
    padded = padded_pairs(collate_pairs, length)
    old_rows = before.share_prompts(*padded)
    new_rows = share_prompts(*padded)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    collate = seconds(lambda: before.share_prompts(*padded), lambda: share_prompts(*padded), repeats)
    torch.set_num_threads(threads)
    result = {
        "row_tokens": int(new_rows.input_ids.shape[1]),
        "collate_pairs": collate_pairs,
        "collate_s_before": collate[0],
        "collate_s_after": collate[1],
        "collate_bytes_before": sum(t.numel() * t.element_size() for t in (old_rows.attention_mask, old_rows.position_ids)),
        "collate_bytes_after": sum(t.numel() * t.element_size() for t in vars(new_rows.segments).values()),
    }
    del old_rows, new_rows
    step_pairs = max(1, step_tokens // length)
    padded = padded_pairs(step_pairs, length)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**MODEL, attn_implementation="sdpa"))
    old_rows, new_rows = before.share_prompts(*padded), share_prompts(*padded)
    old_inputs = lambda: dict(attention_mask=before.attention_mask_for(model, old_rows.attention_mask, old_rows.position_ids),
                              position_ids=old_rows.position_ids)
    steps = seconds(lambda: step(model, old_rows, old_inputs),
                    lambda: step(model, new_rows, lambda: attention_inputs(model, new_rows.segments)), repeats)
    _, mask = seconds(lambda: None, lambda: attention_inputs(model, new_rows.segments), repeats)
    result.update(step_pairs=step_pairs, step_s_before=steps[0], step_s_after=steps[1], mask_s_after=mask)
    return result


def markdown(results: list[dict], revision: str) -> str:
    lines = [
        "# Shared-prompt rows: dense mask in the collate (before) vs segment ids (after)",
        "",
        f"`python -m benchmarks.attention_layout`, before = revision `{revision}`; CPU "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}), "
        "SDPA, medians. Collate: building the shared layout of a batch, one thread (as in a DataLoader worker); "
        "bytes: what it ships per batch. "
        "Step: forward + backward of the small Llama, the mask built inside the step (after; the last column "
        "is that build alone) or taken from the collate (before).",
        "",
        "| row tokens | collate pairs | collate s before | collate s after | collate MiB before | collate MiB after "
        "| step pairs | step s before | step s after | of which mask s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['row_tokens']:,} | {r['collate_pairs']} | {r['collate_s_before']:.4f} | {r['collate_s_after']:.4f} "
            f"| {r['collate_bytes_before'] / 2**20:,.1f} | {r['collate_bytes_after'] / 2**20:,.2f} "
            f"| {r['step_pairs']} | {r['step_s_before']:.2f} | {r['step_s_after']:.2f} | {r['mask_s_after']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384], help="row tokens [prompt | chosen | rejected]")
    parser.add_argument("--collate-pairs", type=int, default=8, help="pairs per collated batch")
    parser.add_argument("--step-tokens", type=int, default=16384, help="row tokens per timed step (pairs = this // length)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="5e9f9af", help="git revision with the dense mask in the collate")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    before = load_before(args.before)
    results = []
    for length in args.lengths:
        results.append(measure(length, args.collate_pairs, args.step_tokens, args.repeats, before))
        print(json.dumps(results[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention_layout.json").write_text(json.dumps({"before": args.before, "results": results}, indent=2) + "\n")
    (args.out / "attention_layout.md").write_text(markdown(results, args.before))
    print(markdown(results, args.before))


if __name__ == "__main__":
    main()
