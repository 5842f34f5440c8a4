"""Parity of the log-prob kernels on the device: the plain padded path against every combination.

The CPU tests prove each kernel equal to the plain path within 1e-5 in float32 on tiny rows; on a
GPU other attention kernels run (memory-efficient SDPA under the block mask, flash without it) and
bf16 autocast rounds differently per layout, so both are checked here on longer rows:

- float32 (TF32 off): summed log-probs within `FP32_SUMS` and gradients within `FP32_GRADS`
  (relative to the exact run) of the plain path's;
- bf16-mixed (autocast, as Lightning's `bf16-mixed`): no combination may be further from the exact
  float32 result than `BF16_SLACK` times the plain bf16 path's own distance (bf16 has no fixed
  "right" answer; a kernel must only not make it clearly worse), with a floor of 1e-3.

With policy == reference every DPO margin is 0, so the step-0 loss is exactly log 2 whatever the
weights: a separately loaded reference checks that both models see the same rows the same way.

The rotary angles at positions up to 8192 under `trainer=gpu`'s TF32 setting must equal exact
float32 ones with lit_prefopt's guard; the unguarded difference is reported beside them.

A combination is the config keys that turn it on plus what they change: the collate step applied
to the loader's padded batch, the LM-head chunk and the attention backend the model is loaded with.
A new kernel (packing, ...) is one more entry of `combinations`. The CUDA-only backends
(`flex_attention`, `varlen`) run the shared-prompt and packed rows through the whole model,
registered with transformers as a training run loads them; where they cannot run (a CPU) they are
reported as skipped with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from benchmarks.fixture import collate_records, read_pairs
from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.collate import with_shared_prompts
from lit_prefopt.kernels.attention.backends import check_usable
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.models.rotary_precision import keep_rotary_angles_exact

FP32_SUMS = 1e-5
FP32_GRADS = 1e-4
# bf16 rounding differs per layout and kernel (tile sizes, where the probabilities are rounded), so a
# correct kernel can land a few times further from float32 than the plain path happened to; a broken
# one (a wrong mask, a wrong position) is off by the log-probs' own size, orders above either bound.
BF16_SLACK = 4.0
# Distances below this never fail: a quarter of bf16's relative spacing (2^-8), and still below one
# token's share of a summed log-prob over a few hundred tokens (a dropped token must not pass).
BF16_FLOOR = 1e-3
LOG2_TOLERANCE = 1e-4
# Rotary angles are compared up to here: TF32 represents every integer position only up to 2048.
ROTARY_POSITIONS = 8192


@dataclass(frozen=True)
class Kernels:
    """One way of computing the log-probs: `settings` are the config keys a user sets for it."""

    name: str
    settings: dict[str, object] = field(default_factory=dict)
    collate: Callable[[PreferenceBatch], PreferenceBatch] | None = None  # None: the padded rows as they are
    chunk_size: int = 0  # model.chunked_logprobs
    attention: str = "sdpa"  # model.attn_implementation
    half_only: bool = False  # FlashAttention kernels (varlen) take bf16/fp16: no float32 run


PLAIN = Kernels("plain", {"data.share_prompt": False, "model.chunked_logprobs": 0})


def combinations(chunk: int) -> list[Kernels]:
    """Every kernel combination there is today; the last is the default configuration."""
    return [
        Kernels("chunked_head", {"data.share_prompt": False, "model.chunked_logprobs": chunk}, None, chunk),
        Kernels("shared_prompt", {"data.share_prompt": True, "model.chunked_logprobs": 0}, with_shared_prompts, 0),
        Kernels("packed+chunked_head", {"data.share_prompt": True, "data.pack": True, "model.chunked_logprobs": chunk},
                _packed, chunk),
        Kernels("shared_prompt+chunked_head", {"data.share_prompt": True, "model.chunked_logprobs": chunk},
                with_shared_prompts, chunk),
    ]


def backend_combinations(chunk: int) -> list[Kernels]:
    """The shared-prompt and packed rows through the attention backends that need CUDA."""
    shared = {"data.share_prompt": True, "model.chunked_logprobs": chunk}
    return [
        Kernels("shared_prompt+chunked_head (flex_attention)", {**shared, "model.attn_implementation": "flex_attention"},
                with_shared_prompts, chunk, "flex_attention"),
        Kernels("shared_prompt+chunked_head (varlen)", {**shared, "model.attn_implementation": "varlen"},
                with_shared_prompts, chunk, "varlen", half_only=True),
        Kernels("packed+chunked_head (varlen)", {**shared, "data.pack": True, "model.attn_implementation": "varlen"},
                _packed, chunk, "varlen", half_only=True),
    ]


def _packed(batch: PreferenceBatch) -> PreferenceBatch:
    """`data.pack=true` with its default row length, 2 * the longest row a pair may have (here the batch's)."""
    return with_shared_prompts(batch, pack_length=2 * batch.input_ids.shape[1])


@dataclass
class Outcome:
    """Summed log-probs [2B] and the flattened gradient of one kernel's run."""

    sums: torch.Tensor
    grads: torch.Tensor


def run_kernels(model: torch.nn.Module, batch: PreferenceBatch, kernels: Kernels, device: torch.device,
                autocast: torch.dtype | None) -> Outcome:
    """Collate as the loader would, move as Lightning would, then log-probs and a weighted backward."""
    on_device = lay_out(batch, kernels, device)
    model.zero_grad(set_to_none=True)
    context = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
    with context:
        sums, _ = sequence_logprobs(model, on_device, kernels.chunk_size)
    # Every sequence weighted differently, so a token scored in the wrong row would show.
    (sums * torch.linspace(0.5, 1.5, sums.numel(), device=device)).sum().backward()
    grads = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
    return Outcome(sums.detach().float(), grads)


def lay_out(batch: PreferenceBatch, kernels: Kernels, device: torch.device) -> PreferenceBatch:
    """The batch as the loader yields it under `kernels`, on `device` (a copy: collate steps may
    attach layouts to the batch they are given)."""
    return move_data_to_device(kernels.collate(replace(batch)) if kernels.collate else batch, device)


def distance(outcome: Outcome, exact: Outcome) -> dict[str, float]:
    """Relative distances: largest log-prob sum error over the largest sum, gradient error norm."""
    sums = float((outcome.sums - exact.sums).abs().max() / exact.sums.abs().max())
    grads = float((outcome.grads - exact.grads).norm() / exact.grads.norm())
    return {"sums_rel": sums, "grads_rel": grads}


def precisions(device: torch.device) -> tuple[dict[str, torch.dtype | None], dict[str, str]]:
    """The precisions to check here, and those skipped with the reason."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return {"32-true": None, "bf16-mixed": torch.bfloat16}, {}
    return {"32-true": None}, {"bf16-mixed": f"no bf16-capable CUDA device (running on {device.type})"}


def check_parity(checkpoint_dir: Path, pairs_path: Path, device: torch.device, pairs: int, chunk: int) -> dict:
    """Every combination against the plain path in each precision, and DPO's step-0 loss."""
    checkpoint = HFCheckpoint(path=str(checkpoint_dir))
    records = list(read_pairs(pairs_path))[:pairs]
    batch = collate_records(checkpoint.load_tokenizer(), records)
    policy = checkpoint.load_policy().to(device).eval()
    reference = checkpoint.load_reference().to(device)
    models, skipped_kernels = backend_models(checkpoint_dir, device, backend_combinations(chunk))
    matmul_precision = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # float32 means float32 here, not TF32
    try:
        exact = run_kernels(policy, batch, PLAIN, device, None)
        checks, log2_checks = [], []
        kept, skipped = precisions(device)
        plains = {precision: distance(run_kernels(policy, batch, PLAIN, device, autocast), exact)
                  for precision, autocast in kept.items()}
        for precision, autocast in kept.items():
            for kernels in combinations(chunk):
                checks.append(compare(policy, batch, kernels, device, autocast, exact, precision, plains[precision]))
            log2_checks.append(dpo_step_zero(policy, reference, batch, combinations(chunk)[-1], device, autocast,
                                             precision))
        rotary = rotary_angles(policy, device)
        # Last: a backend that has never run here may leave the device broken for whatever follows.
        for precision, autocast in kept.items():
            for kernels in (k for k in backend_combinations(chunk) if k.attention in models):
                if kernels.half_only and autocast is None:
                    skipped_kernels[f"{kernels.name}, {precision}"] = "FlashAttention kernels take bfloat16 or float16"
                    continue
                checks.append(compare(models[kernels.attention], batch, kernels, device, autocast, exact, precision,
                                      plains[precision]))
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
    return {
        "device": str(device), "pairs": len(records), "tokens": batch.num_tokens(), "chunk": chunk,
        "checks": checks, "dpo_step_zero": log2_checks, "skipped": skipped, "skipped_kernels": skipped_kernels,
        "rotary": rotary,
        "passed": all(c["passed"] for c in checks + log2_checks + [rotary]),
    }


def compare(model: torch.nn.Module, batch: PreferenceBatch, kernels: Kernels, device: torch.device,
            autocast: torch.dtype | None, exact: Outcome, precision: str, plain: dict[str, float]) -> dict:
    """One combination's distances from the exact run and its bound; an error (a kernel that has never
    run on this device) is recorded as a failed check, and the other combinations still run."""
    check = {"precision": precision, "kernels": kernels.name, "settings": kernels.settings, "plain": plain,
             "bound": _bound(precision, plain)}
    try:
        error = distance(run_kernels(model, batch, kernels, device, autocast), exact)
    except Exception as failure:  # reported, not raised: one broken backend must not hide the rest
        return {**check, "error": f"{type(failure).__name__}: {failure}", "passed": False}
    return {**check, **error, "passed": all(error[key] <= check["bound"][key] for key in error)}


def backend_models(checkpoint_dir: Path, device: torch.device,
                   kernels: list[Kernels]) -> tuple[dict[str, torch.nn.Module], dict[str, str]]:
    """The policy loaded with each attention backend `kernels` use, as a training run loads it, and
    the combinations skipped because this machine cannot train with their backend (why)."""
    models, skipped = {}, {}
    for name in dict.fromkeys(k.attention for k in kernels):
        try:
            check_usable(name, device)
            models[name] = HFCheckpoint(path=str(checkpoint_dir), attn_implementation=name).load_policy().to(device).eval()
        except ValueError as refusal:
            skipped.update({k.name: str(refusal) for k in kernels if k.attention == name})
    return models, skipped


def rotary_angles(model: torch.nn.Module, device: torch.device, positions: int = ROTARY_POSITIONS) -> dict:
    """The rotary cos/sin at positions 0..`positions`-1 under `high` (trainer=gpu's TF32), as transformers
    computes them and with lit_prefopt's guard (lit_prefopt.models.rotary_precision), against `highest`.

    Two rows: the rounding was reported with more than one row. The unguarded difference is what a run
    without the guard would get on this GPU and transformers version; the guarded one must be 0.
    """
    rotary = model.get_decoder().rotary_emb
    probe = torch.zeros(1, device=device)
    position_ids = torch.arange(positions, device=device)[None].expand(2, -1)

    def angles(precision: str) -> torch.Tensor:
        torch.set_float32_matmul_precision(precision)
        return torch.cat(rotary(probe, position_ids))

    exact, unguarded = angles("highest"), angles("high")
    keep_rotary_angles_exact(model)
    guarded = angles("high")
    torch.set_float32_matmul_precision("highest")
    guarded_diff = float((guarded - exact).abs().max())
    return {"positions": positions, "unguarded_max_diff": float((unguarded - exact).abs().max()),
            "guarded_max_diff": guarded_diff, "passed": guarded_diff == 0.0}


def _bound(precision: str, plain: dict[str, float]) -> dict[str, float]:
    if precision == "32-true":
        return {"sums_rel": FP32_SUMS, "grads_rel": FP32_GRADS}
    return {key: max(BF16_SLACK * value, BF16_FLOOR) for key, value in plain.items()}


def dpo_step_zero(policy: torch.nn.Module, reference: torch.nn.Module, batch: PreferenceBatch, kernels: Kernels,
                  device: torch.device, autocast: torch.dtype | None, precision: str) -> dict:
    """DPO's loss with the reference loaded separately from the same checkpoint: log 2 exactly."""
    on_device = lay_out(batch, kernels, device)
    context = torch.autocast(device.type, dtype=autocast) if autocast else nullcontext()
    with torch.no_grad(), context:
        sums, lengths = sequence_logprobs(policy, on_device, kernels.chunk_size)
        reference_sums, _ = sequence_logprobs(reference, on_device, kernels.chunk_size)
    logps = PairLogps(*sums.chunk(2), *lengths.chunk(2), *reference_sums.chunk(2))
    loss = float(DPO()(logps).losses.mean())
    error = abs(loss - math.log(2))
    return {"precision": precision, "kernels": kernels.name, "loss": loss, "abs_error": error,
            "tolerance": LOG2_TOLERANCE, "passed": error <= LOG2_TOLERANCE}
