"""The GPU check: `python -m benchmarks.gpu_check [--smoke] [--out DIR]` (or `make gpu-check`).

Everything the CPU test suite cannot prove, in one run sized to take under 8 minutes on one GPU
(H200-class; not yet timed on one):

1. parity: the log-prob kernels against the plain path on the device, float32 and bf16-mixed,
   and DPO's step-0 loss of log 2 (`benchmarks.gpu.kernel_parity`);
2. attention: dense-mask SDPA, flex, varlen and padded flash at rows of ~3k and ~6k tokens,
   timed with peak memory (`benchmarks.gpu.attention_timing`; layouts and backends beside it);
3. e2e: `python -m lit_prefopt trainer=gpu` with `strategy=auto` and `strategy=fsdp`, a resume,
   and the `hf/` exports reloaded (`benchmarks.gpu.e2e`);
4. trl: throughput, peak memory and MFU against TRL's DPOTrainer on a Llama-3.2-1B-shaped model
   (`benchmarks.gpu.trl_compare`).

`--smoke` runs the same code on tiny shapes in a minute on a CPU (CI runs it); there everything
that needs CUDA (bf16-mixed, flex, varlen, GPU memory, MFU) is reported as skipped with the reason.
The parity and attention sections run in a child process of their own, so a kernel that crashes
its process fails its section only. Results: `DIR/gpu_check.json` (every number) and
`DIR/gpu_check.md`, rewritten after each section (`complete` is false until the last one ends);
the exit status is 1 when a check failed. Nothing here imports wandb or tensorboard; child runs
log to CSV or not at all.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.connection
import platform
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from benchmarks.fixture import ModelShape, read_pairs
from benchmarks.gpu.attention_layouts import Layout
from benchmarks.gpu.attention_timing import release_cached_memory, time_backends
from benchmarks.gpu.e2e import run_end_to_end
from benchmarks.gpu.inputs import build_inputs
from benchmarks.gpu.kernel_parity import check_parity
from benchmarks.gpu.report import write_markdown
from benchmarks.gpu.trl_compare import LLAMA_3_2_1B, compare_with_trl
from benchmarks.run import SMOKE_SHAPE

RESULTS = Path(__file__).resolve().parent / "results" / "gpu"
SECTIONS = ("parity", "attention", "e2e", "trl")

# The model of the parity and end-to-end runs: Llama-3-8B's 32 query / 8 key-value heads, small.
CHECK_SHAPE = ModelShape(hidden_size=1024, num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=8,
                         intermediate_size=2816, vocab_size=32_000, max_position_embeddings=4096)
SMOKE_CHECK_SHAPE = ModelShape(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                               intermediate_size=64, vocab_size=512)


def plan(smoke: bool) -> dict:
    """Sizes of every section: the GPU check's, or tiny ones that only prove the script runs."""
    if smoke:
        heads = {"query_heads": 4, "kv_heads": 2, "head_dim": 16}
        return {"shape": SMOKE_CHECK_SHAPE, "group": 4, "max_seq_len": 256, "parity_pairs": 4, "chunk": 16,
                "layouts": [Layout.of_length(2, 96, **heads), Layout.of_length(1, 192, **heads)], "repeats": 2,
                "e2e_steps": 2, "e2e_batch": 2, "trl_shape": SMOKE_SHAPE, "trl_group": 2, "trl_max_seq_len": 256,
                "trl_steps": 3, "trl_batch": 2, "trl_runs": ("trl", "lit")}
    return {"shape": CHECK_SHAPE, "group": 16, "max_seq_len": 2048, "parity_pairs": 8, "chunk": 256,
            "layouts": [Layout.of_length(4, 3072), Layout.of_length(2, 6144)], "repeats": 10,
            "e2e_steps": 4, "e2e_batch": 8, "trl_shape": LLAMA_3_2_1B, "trl_group": 32, "trl_max_seq_len": 2048,
            "trl_steps": 12, "trl_batch": 8, "trl_runs": ("trl", "lit_plain", "lit")}


def machine(device: torch.device) -> dict:
    cuda = device.type == "cuda"
    return {
        "platform": platform.platform(), "python": platform.python_version(), "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "capability": ".".join(map(str, torch.cuda.get_device_capability(device))) if cuda else None,
        "cuda": torch.version.cuda,
        **{name: _version(name) for name in ("torch", "transformers", "lightning", "trl")},
    }


def _version(package: str) -> str | None:
    """A package's installed version; None when it is missing (trl on a bare GPU machine)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def run_section(name: str, body: Callable[[], dict]) -> dict:
    """One section, timed; an exception becomes a failed section, so the others still run."""
    print(f"[{name}]", flush=True)
    started = time.perf_counter()
    try:
        result = body()
    except Exception as error:
        result = {"passed": False, "error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        print(result["traceback"], flush=True)
    result["seconds"] = time.perf_counter() - started
    print(f"[{name}] {'passed' if result['passed'] else 'FAILED'} in {result['seconds']:.0f} s", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, a minute on a CPU: checks the script")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where gpu_check.json and gpu_check.md go")
    parser.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    parser.add_argument("--timeout", type=float, default=600, help="seconds for each child process (a section's, or each run's)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (models, runs, logs)")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        parser.error("no CUDA device: the full check needs a GPU (use --smoke to check the script on a CPU)")
    root = Path(tempfile.mkdtemp(prefix="lit_prefopt_gpu_check_"))
    try:
        return check(args, device, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def check(args: argparse.Namespace, device: torch.device, root: Path) -> int:
    """Build the inputs, run every section not skipped, write the report; 0 when all passed."""
    started = time.perf_counter()
    sizes, gpu = plan(args.smoke), device.type == "cuda"
    checkpoint, pairs = build_inputs(root / "inputs", sizes["shape"], sizes["group"], sizes["max_seq_len"])
    val_pairs = root / "inputs" / "val.jsonl"
    val_pairs.write_text("".join(json.dumps(p) + "\n" for p in list(read_pairs(pairs.path))[: sizes["e2e_batch"]]))
    dtype = torch.bfloat16 if gpu else torch.float32
    bodies = {
        "parity": lambda: in_child_process(check_parity, checkpoint, pairs.path, device, sizes["parity_pairs"],
                                           sizes["chunk"], timeout_s=args.timeout),
        "attention": lambda: in_child_process(time_backends, sizes["layouts"], device, dtype, sizes["repeats"],
                                              timeout_s=args.timeout),
        "e2e": lambda: run_end_to_end(root / "e2e", checkpoint, pairs.path, val_pairs, gpu, sizes["e2e_steps"],
                                      sizes["e2e_batch"], args.timeout),
        "trl": lambda: compare_with_trl(root / "trl", sizes["trl_shape"], sizes["trl_group"], sizes["trl_max_seq_len"],
                                        sizes["trl_steps"], sizes["trl_batch"], gpu, args.timeout, sizes["trl_runs"]),
    }
    report = {"smoke": args.smoke, "machine": machine(device), "work_dir": str(root) if args.keep else None,
              "sections": {}, "complete": False}
    for name in SECTIONS:
        if name in args.skip:
            continue
        report["sections"][name] = run_section(name, bodies[name])
        write_results(report, args.out, time.perf_counter() - started)
        release_cached_memory(device)
    report["complete"] = True
    write_results(report, args.out, time.perf_counter() - started)
    print((args.out / "gpu_check.md").read_text(), flush=True)
    return 0 if report["passed"] else 1


def in_child_process(body: Callable[..., dict], *args: object, timeout_s: float) -> dict:
    """Run a section that calls kernels in this process (parity, attention) in a fresh one instead:
    a kernel that has never run on this GPU may kill its process (a segfault while compiling, a
    device assert) or hang it (a stuck compile), which then fails that section alone, after at most
    `timeout_s`, with the sections after it still run."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(target=_send_result, args=(sending, body, args), daemon=True)
    child.start()
    sending.close()
    try:
        if not receiving.poll(timeout_s):
            raise TimeoutError(f"no result after {timeout_s:.0f} s (--timeout)")
        try:
            outcome, value = receiving.recv()
        except EOFError:
            child.join(5)
            raise RuntimeError(f"the section's process died (exit code {child.exitcode})") from None
        if outcome == "error":
            raise RuntimeError(f"in the section's process:\n{value}")
        return value
    finally:
        if child.is_alive():
            child.kill()
        child.join()


def _send_result(sending: multiprocessing.connection.Connection, body: Callable[..., dict], args: tuple) -> None:
    """The child's side of `in_child_process`: the section's result, or its traceback."""
    try:
        message = ("ok", body(*args))
    except Exception:
        message = ("error", traceback.format_exc())
    sending.send(message)
    sending.close()


def write_results(report: dict, out: Path, seconds: float) -> None:
    """The JSON and Markdown of the sections run so far, rewritten after each one: a check stopped
    by its time limit (a GPU lease, a job's wall time) still leaves every finished section's numbers."""
    report["seconds"] = seconds
    report["passed"] = report["complete"] and all(section["passed"] for section in report["sections"].values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    write_markdown(report, out / "gpu_check.md")


if __name__ == "__main__":
    raise SystemExit(main())
