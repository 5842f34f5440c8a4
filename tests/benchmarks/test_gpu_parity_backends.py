"""The GPU check's parity over attention backends, on a CPU with the backends stood in for: a
half-precision-only backend gets no float32 check (it is skipped with the reason), and a backend
that raises becomes one failed check while every other combination still runs and passes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.gpu import kernel_parity
from benchmarks.gpu.inputs import build_inputs
from benchmarks.gpu_check import SMOKE_CHECK_SHAPE
from lit_prefopt.models.checkpoint import HFCheckpoint


def _fail(**inputs: object) -> None:
    """A backend that has never run on this device, failing in the model's forward."""
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_backend_combinations_skip_float32_where_half_only_and_report_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, pairs = build_inputs(tmp_path, SMOKE_CHECK_SHAPE, group=2, max_seq_len=256)
    sdpa_policy, broken = (HFCheckpoint(path=str(checkpoint)).load_policy().eval() for _ in range(2))
    broken.forward = _fail
    # varlen stood in for by an SDPA model (same weights, so it would pass); flex by a broken one.
    monkeypatch.setattr(kernel_parity, "backend_models", lambda *args: ({"varlen": sdpa_policy, "flex_attention": broken}, {}))
    result = kernel_parity.check_parity(checkpoint, pairs.path, torch.device("cpu"), pairs=4, chunk=16)

    checks = {c["kernels"]: c for c in result["checks"]}
    flex = checks.pop("shared_prompt+chunked_head (flex_attention)")
    assert not flex["passed"] and "illegal memory access" in flex["error"]
    assert not any("varlen" in name for name in checks)  # float32 only here: varlen never ran
    assert set(result["skipped_kernels"]) == {"shared_prompt+chunked_head (varlen), 32-true",
                                              "packed+chunked_head (varlen), 32-true"}
    assert len(checks) == len(kernel_parity.combinations(16)) and all(c["passed"] for c in checks.values())
    assert not result["passed"]
