"""The GPU check runs end to end on a CPU in `--smoke` mode, so it cannot rot before a GPU is lent.

On a CPU every CUDA-only part must be reported as skipped with a reason (not crash, not pass
silently), the float32 kernel parity must hold, and the end-to-end runs must finish and pass their
checks. No timing is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--smoke", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = report["sections"]
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    assert report["passed"] and report["complete"] and set(sections) == {"parity", "attention", "e2e", "trl"}

    parity = sections["parity"]
    assert parity["passed"]
    assert {(c["precision"], c["kernels"]) for c in parity["checks"]} == {
        ("32-true", "chunked_head"), ("32-true", "shared_prompt"), ("32-true", "packed+chunked_head"),
        ("32-true", "shared_prompt+chunked_head")}
    assert [c["passed"] for c in parity["dpo_step_zero"]] == [True]
    assert "bf16-mixed" in parity["skipped"]
    assert set(parity["skipped_kernels"]) == {  # the CUDA-only attention backends, each with the reason
        "shared_prompt+chunked_head (flex_attention)", "shared_prompt+chunked_head (varlen)", "packed+chunked_head (varlen)"}
    assert all("model.attn_implementation" in reason for reason in parity["skipped_kernels"].values())
    assert parity["rotary"]["passed"] and parity["rotary"]["guarded_max_diff"] == 0.0

    attention = {(r["backend"], r["length"]): r for r in sections["attention"]["results"]}
    for length in (96, 192):
        assert attention["dense_sdpa", length]["status"] == attention["padded_flash", length]["status"] == "ok"
        assert attention["padded_flash", length]["matches_dense"]
        assert attention["flex", length]["status"] == attention["varlen", length]["status"] == "skipped"
        assert attention["varlen", length]["reason"]

    runs = {r["name"]: r for r in sections["e2e"]["runs"]}
    assert set(runs) == {"auto", "fsdp", "fsdp_resume"}
    for run in runs.values():
        assert run["returncode"] == 0 and run["passed"], run
    assert runs["fsdp"]["checks"]["distributed_backend"] is True  # gloo on a CPU
    assert runs["auto"]["checks"]["step0_loss_log2"] is True

    trl = {r["name"]: r for r in sections["trl"]["runs"]}
    assert all("pairs_per_s" in r for r in trl.values()), trl
    assert (tmp_path / "gpu_check.md").read_text().startswith("# GPU check (smoke run")


def test_a_stopped_check_leaves_its_finished_sections_marked_incomplete(tmp_path: Path) -> None:
    """Results are rewritten after each section, so a check stopped by a time limit still has them;
    until the last section ends they are marked incomplete and not passed."""
    from benchmarks.gpu_check import write_results

    machine = {"gpu": "NVIDIA H200", "capability": "9.0", "cuda": "13.0", "device": "cuda",
               "torch": "2.11.0", "transformers": "5.17.0", "lightning": "2.6.6", "trl": None}
    parity = {"passed": True, "seconds": 3.0, "checks": [], "dpo_step_zero": []}
    report = {"smoke": False, "machine": machine, "sections": {"parity": parity}, "complete": False}
    write_results(report, tmp_path, 5.0)
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["complete"] is False and saved["passed"] is False and saved["sections"]["parity"]["passed"]
    assert "INCOMPLETE" in (tmp_path / "gpu_check.md").read_text()

    report["complete"] = True
    write_results(report, tmp_path, 6.0)
    assert json.loads((tmp_path / "gpu_check.json").read_text())["passed"] is True
    assert "PASSED in 6 s on NVIDIA H200" in (tmp_path / "gpu_check.md").read_text()
