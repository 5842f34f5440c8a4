"""The chunked LM head under bf16: one cast of the head per pass, bf16 matmuls forward and
backward, and the full-logits path's log-probs and gradients within what bf16 allows."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lit_prefopt.kernels.chunked_head import ChunkedHeadLogprobs
from lit_prefopt.models.checkpoint import HFCheckpoint
from tests.test_logprob_kernels import _batch, _sums_and_grads

MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.addmm_.default}


class HeadOps(TorchDispatchMode):
    """Counts copies of the head weight (`_to_copy` of a tensor its size) and the dtypes of matmuls."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight_numel = weight.numel()
        self.weight_casts = 0
        self.matmul_dtypes: set[tuple[torch.dtype, ...]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._to_copy.default and args[0].numel() == self.weight_numel:
            self.weight_casts += 1
        if func in MATMULS:
            self.matmul_dtypes.add(tuple(a.dtype for a in args if isinstance(a, torch.Tensor)))
        return func(*args, **(kwargs or {}))


def test_head_is_cast_once_per_pass_and_multiplied_in_bf16_both_ways() -> None:
    """Under autocast (bf16-mixed) with float32 weights: 600 rows in chunks of 256 cast the head once
    in forward and once in backward (not once per chunk), and every matmul takes bf16 operands."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(600, 16, generator=generator, requires_grad=True)
    weight = torch.randn(64, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 64, (600,), generator=generator)
    with HeadOps(weight) as forward_ops, torch.autocast("cpu", torch.bfloat16):
        logps = ChunkedHeadLogprobs.apply(hidden, weight, targets, 256)
    with HeadOps(weight) as backward_ops:
        logps.sum().backward()
    assert logps.dtype == torch.float32
    assert forward_ops.weight_casts == 1 and backward_ops.weight_casts == 1
    bf16 = {(torch.bfloat16, torch.bfloat16)}
    assert forward_ops.matmul_dtypes == bf16 and backward_ops.matmul_dtypes == bf16
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32


def test_float32_head_never_casts() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(40, 8, generator=generator, requires_grad=True)
    weight = torch.randn(30, 8, generator=generator, requires_grad=True)
    with HeadOps(weight) as ops:
        ChunkedHeadLogprobs.apply(hidden, weight, torch.randint(0, 30, (40,), generator=generator), 16).sum().backward()
    assert ops.weight_casts == 0 and {dtype for dtypes in ops.matmul_dtypes for dtype in dtypes} == {torch.float32}


@pytest.mark.parametrize("dtype, autocast", [("float32", True), ("bfloat16", False)],
                         ids=["bf16-mixed", "bf16-weights"])
def test_bf16_chunked_head_matches_full_logits(tiny_llama, dtype: str, autocast: bool) -> None:
    """bf16 rounds the logits (spacing 2^-8 relative): log-prob sums agree to a few 1e-3, the head's
    gradient to one bf16 step at its scale, the decoder's gradients exactly (same bf16 matmuls)."""
    policy = HFCheckpoint(path=tiny_llama.path, dtype=dtype).load_policy().eval()
    batch = _batch(prompts=[6, 9, 3], chosen=[4, 1, 7], rejected=[2, 6, 5], vocab=policy.config.vocab_size)
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        plain_sums, _, plain_grads = _sums_and_grads(policy, batch, chunk_size=0)
        sums, _, grads = _sums_and_grads(policy, batch, chunk_size=5)
    torch.testing.assert_close(sums, plain_sums, atol=5e-3, rtol=0)
    for name, grad in grads.items():
        step = 2**-7 * plain_grads[name].abs().max().item()
        torch.testing.assert_close(grad.float(), plain_grads[name].float(), atol=step, rtol=0, msg=name)


@pytest.mark.parametrize("keep_softmax", [False, True], ids=["logits-recomputed", "softmax-kept"])
def test_each_chunk_holds_one_float32_logits_buffer(keep_softmax: bool, monkeypatch) -> None:
    """Forward and backward each add one C x V float32 buffer to the process's peak, not two: the
    log-sum-exp and the softmax run in place in the logits (`logsumexp` and `softmax` would each
    allocate a second one, 250 MiB instead of 125 at 256 tokens and a 128k vocabulary). Buffers of
    64 MiB, far above glibc's largest mmap threshold, so each is mapped and unmapped whole. A kept
    softmax is the forward's buffer, and the backward makes the gradient in it: no second one."""
    from benchmarks.resident_memory import reset_peak, status_bytes
    from lit_prefopt.kernels import chunked_head

    monkeypatch.setattr(chunked_head, "KEEP_SOFTMAX_BYTES", 64 * 2**20 if keep_softmax else 0)

    chunk, vocab = 128, 131_072
    buffer = 4 * chunk * vocab
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(chunk, 4, generator=generator, requires_grad=True)
    weight = torch.randn(vocab, 4, generator=generator)  # no gradient: only the chunk buffers count
    targets = torch.randint(0, vocab, (chunk,), generator=generator)
    start = _reset_peak_of_fresh_memory(reset_peak)
    logps = ChunkedHeadLogprobs.apply(hidden, weight, targets, chunk)
    forward_rise = status_bytes("VmHWM") - start
    start = _reset_peak_of_fresh_memory(reset_peak)
    logps.sum().backward()
    backward_rise = status_bytes("VmHWM") - start
    assert 0.9 * buffer < forward_rise < 1.5 * buffer
    if keep_softmax:
        assert backward_rise < 0.1 * buffer
    else:
        assert 0.9 * buffer < backward_rise < 1.5 * buffer
    expected = torch.log_softmax(hidden.detach() @ weight.T, dim=1).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(logps.detach(), expected)


def _reset_peak_of_fresh_memory(reset_peak) -> int:
    """`reset_peak` after glibc has returned its free heap pages to the kernel. Earlier tests in this
    process can leave a free region of the heap larger than a buffer, already resident: glibc
    serves the buffer from it without mapping new memory, and the peak would not see the buffer.
    Trimmed, those pages fault in again when used and count as they do in a fresh process."""
    import ctypes
    import ctypes.util

    libc = ctypes.util.find_library("c")
    if libc is not None and hasattr(ctypes.CDLL(libc), "malloc_trim"):
        ctypes.CDLL(libc).malloc_trim(0)
    return reset_peak()
