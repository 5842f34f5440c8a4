"""DPO step seconds and padding with and without `data.pack`, on CPU, in one process.

The same batches (the data module with the shipped HH sample, unshuffled) train the same random
~7M-parameter Llama (`fixture.ModelShape`, built from a config, no download) with and without
packing, at the default batching (8 pairs) and with a token budget. A step is what the training
module runs: policy forward and backward, reference forward, DPO, AdamW. The padding fraction is
that of the rows the model actually encodes (shared-prompt rows, packed or not): 1 - real tokens /
(rows x width). Usage:

    python -m benchmarks.packing --out benchmarks/results/packing.md
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.fixture import DEFAULT_PAIRS, ModelShape, build_checkpoint, read_pairs
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.kernels.attention.segments import PADDING
from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.module import PreferenceModule

BATCHINGS = {"defaults (batch_size=8)": {}, "token budget (max_num_tokens=8192)": {"max_num_tokens": 8192}}


def encoded_padding(batch: PreferenceBatch) -> tuple[int, int]:
    """(real tokens, positions) of the rows the model encodes."""
    kind = batch.shared_prefix.segments.kind
    return int((kind != PADDING).sum()), kind.numel()


def measure(checkpoint: HFCheckpoint, policy, reference, layouts: dict[bool, list[PreferenceBatch]], warmup: int) -> dict:
    """Step seconds of each layout, the two alternating batch by batch so that load on a shared
    machine falls on both alike."""
    steps = {}
    for pack in layouts:
        module = PreferenceModule(checkpoint, DPO(), optimizer=torch.optim.AdamW)
        module.policy = copy.deepcopy(policy).train()
        module.__dict__["reference"] = reference
        steps[pack] = (module, torch.optim.AdamW(module.policy.parameters(), lr=1e-5), [], [])
    for index in range(len(layouts[False])):
        for pack, (module, optimizer, seconds, losses) in steps.items():
            batch = layouts[pack][index]
            started = time.perf_counter()
            optimizer.zero_grad()
            per_pair, weights, _ = module._pair_results(batch)
            loss = (per_pair * weights).sum() / weights.sum()
            loss.backward()
            optimizer.step()
            if index >= warmup:
                seconds.append(time.perf_counter() - started)
            losses.append(loss.item())
    results = {}
    for pack, (_, _, seconds, losses) in steps.items():
        batches = layouts[pack]
        real, positions = map(sum, zip(*(encoded_padding(b) for b in batches)))
        timed_pairs = sum(b.num_pairs for b in batches[warmup:])
        results[pack] = {
            "step_s_median": statistics.median(seconds),
            "step_s_mean": statistics.fmean(seconds),
            "pairs": timed_pairs,
            "pairs_per_s": timed_pairs / sum(seconds),
            "padding_fraction": 1 - real / positions,
            "rows_per_batch": statistics.fmean(b.shared_prefix.input_ids.shape[0] for b in batches),
            "row_width_mean": statistics.fmean(b.shared_prefix.input_ids.shape[1] for b in batches),
            "losses": losses,
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs-file", type=Path, default=DEFAULT_PAIRS)
    parser.add_argument("--steps", type=int, default=12, help="timed steps per setting (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True, help="Markdown file; JSON beside it")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        path = build_checkpoint(Path(root) / "model", ModelShape(), list(read_pairs(args.pairs_file)))
        checkpoint = HFCheckpoint(path=str(path))
        policy, reference = checkpoint.load_policy(), checkpoint.load_reference().eval()
        tokenizer = checkpoint.load_tokenizer()
        results = []
        for batching, settings in BATCHINGS.items():
            layouts = {}
            for pack in (False, True):
                data = PreferenceDataModule(train_files=[str(args.pairs_file)], shuffle=False, pack=pack, **settings)
                data.set_tokenizer(tokenizer)
                loader = iter(data.train_dataloader())
                layouts[pack] = [next(loader) for _ in range(args.warmup + args.steps)]
            for pack, result in measure(checkpoint, policy, reference, layouts, args.warmup).items():
                results.append({"batching": batching, "pack": pack, **result})
                print(json.dumps(results[-1]), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.write_text(markdown(results, args))


def markdown(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "# data.pack on CPU: DPO step seconds and padding",
        "",
        f"Command: `python -m benchmarks.packing --steps {args.steps} --warmup {args.warmup} --out {args.out}` "
        f"(pairs: {args.pairs_file.name} of {args.pairs_file.parent.name}; timed steps per setting {args.steps} after "
        f"{args.warmup} warm-up).",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; model: random Llama {ModelShape()} built from a config; "
        "attention sdpa (dense mask from segment ids); data.share_prompt=true, max_seq_len 1024, "
        "pack_length default (2048), unshuffled, the same batches with and without packing.",
        "",
        "| batching | data.pack | step s (median) | step s (mean) | pairs/s | padding fraction | rows/batch | row width | max loss difference to pack=false |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    unpacked = {r["batching"]: r["losses"] for r in results if not r["pack"]}
    for r in results:
        difference = max(abs(a - b) for a, b in zip(r["losses"], unpacked[r["batching"]]))
        lines.append(
            f"| {r['batching']} | {str(r['pack']).lower()} | {r['step_s_median']:.3f} | {r['step_s_mean']:.3f} | "
            f"{r['pairs_per_s']:.3f} | {r['padding_fraction']:.3f} | {r['rows_per_batch']:.2f} | "
            f"{r['row_width_mean']:.0f} | {difference:.1e} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
