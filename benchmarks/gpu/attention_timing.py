"""Attention backends for the shared-prompt layout, timed forward + backward, with peak memory.

Every backend of `attention_backends` at every layout, from the same random q/k/v: ms per call
after a first call (which also compiles), peak memory above the inputs, and the largest difference
of its output from `dense_sdpa`'s run in float32 on the same inputs, in the same token order, so a
wrong index or mask shows as a difference rather than as a fast time. A backend this machine lacks
is reported as skipped with the reason; one that fails is reported with its error and fails the
section.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable

import torch
from torch import Tensor

from benchmarks.gpu.attention_backends import BACKENDS, Unavailable, varlen_kernel
from benchmarks.gpu.attention_layouts import Layout

FLOAT32_TOLERANCE = 1e-4
"""Largest difference of a float32 backend from float32 dense attention."""
BF16_SLACK = 4.0
BF16_FLOOR = 1e-3
"""A bf16 backend may differ from float32 dense attention by `BF16_SLACK` times dense bf16's own
difference (each kernel rounds its probabilities to bf16 its own way, and the largest of tens of
millions of rounding errors varies between kernels), and by at least `BF16_FLOOR`: a fixed absolute
bound would fail a correct kernel on one rounding step. A wrong mask moves outputs by their own size,
far above either."""


def time_backends(layouts: list[Layout], device: torch.device, dtype: torch.dtype, repeats: int) -> dict:
    """Every backend at every layout: ms per forward+backward, peak memory, difference from dense."""
    results = []
    for layout in layouts:
        generator = torch.Generator(device=device).manual_seed(0)
        shape = (layout.rows, layout.length)
        q = torch.randn(*shape, layout.query_heads, layout.head_dim, device=device, dtype=dtype, generator=generator)
        k, v = (torch.randn(*shape, layout.kv_heads, layout.head_dim, device=device, dtype=dtype, generator=generator)
                for _ in range(2))
        exact, tolerance = None, FLOAT32_TOLERANCE  # dense attention in float32 (BACKENDS' first), and its bound
        for name, build in BACKENDS.items():
            result = {"backend": name, **layout.__dict__, "length": layout.length,
                      "dtype": str(dtype).removeprefix("torch.")}
            try:
                started = time.perf_counter()
                attend = build(layout, device)
                output, timing = _timed(attend, q, k, v, device, repeats)
                result.update(status="ok", setup_s=time.perf_counter() - started - timing["total_s"], **timing)
                if name == "dense_sdpa":
                    with torch.no_grad():
                        exact = attend(q.float(), k.float(), v.float())
                if exact is not None:
                    difference = float((output.float() - exact).abs().max())
                    if name == "dense_sdpa" and dtype != torch.float32:
                        tolerance = max(BF16_SLACK * difference, BF16_FLOOR)
                    result.update(max_abs_diff_vs_dense=difference, tolerance=tolerance,
                                  matches_dense=difference <= tolerance)
            except Unavailable as reason:
                result.update(status="skipped", reason=str(reason))
            except Exception as error:  # a broken backend is a finding to report, not a reason to stop
                result.update(status="failed", error=f"{type(error).__name__}: {error}",
                              traceback=traceback.format_exc()[-2000:])
            if name == "varlen" and result["status"] == "ok":
                result["kernel"] = varlen_kernel(device)[0]
            results.append(result)
            release_cached_memory(device)
    return {"results": results,
            "passed": all(r["status"] != "failed" and r.get("matches_dense", True) for r in results)}


def _timed(attend: Callable, q: Tensor, k: Tensor, v: Tensor, device: torch.device,
           repeats: int) -> tuple[Tensor, dict]:
    """The first output, then ms per call after that warm-up (which also compiles), and the peak
    memory of the calls above what was allocated before them (the inputs)."""
    started = time.perf_counter()
    first = _forward_backward(attend, q, k, v)
    first_call_s = time.perf_counter() - started
    peak = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    clock = time.perf_counter()
    for _ in range(repeats):
        _forward_backward(attend, q, k, v)
    ms = (time.perf_counter() - clock) / repeats * 1000
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
    return first, {"ms_fwd_bwd": ms, "first_call_s": first_call_s, "peak_mib": peak,
                   "total_s": time.perf_counter() - started}


def _forward_backward(attend: Callable, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """One call with gradients into fresh leaves (freed on return); waits for the device."""
    inputs = [x.detach().requires_grad_() for x in (q, k, v)]
    output = attend(*inputs)
    output.backward(torch.ones_like(output))
    _sync(q.device)
    return output.detach()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release_cached_memory(device: torch.device) -> None:
    """Return the cached blocks between backends; a device left broken by a failed kernel (a sticky
    CUDA error) refuses this too, which must not lose the results already measured."""
    if device.type == "cuda":
        try:
            torch.cuda.empty_cache()
        except RuntimeError as error:
            print(f"torch.cuda.empty_cache failed: {error}", flush=True)
