"""lit_prefopt against TRL, side by side on one machine: `python -m benchmarks.run [--smoke]`.

Builds the ~7M-parameter tiny Llama and its BPE tokenizer from the HH-RLHF pairs, then trains
each system in its own process on the same checkpoint, pairs, cap, pairs per step, dtype and
learning rate, and reports steady-state throughput, peak memory, ratios, the 128k-vocabulary
memory configuration, padding fractions, achieved FLOP/s against measured matmul FLOP/s (the
effective figure and the MFU of the FLOPs actually computed), the reference-cache speedup and
first-step parity. Results go to `benchmarks/results/` as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from transformers import AutoConfig

from benchmarks.child import child_env, run_child
from benchmarks.fixture import DEFAULT_PAIRS, ModelShape, build_checkpoint, read_pairs, write_long_pairs, write_pairs
from benchmarks.flops import computed_step_flops, matmul_flops_per_s, step_flops
from benchmarks.report import write_markdown
from benchmarks.step_log import summarize
from benchmarks.systems import RunSpec, Workload, lit_args, trl_args

RESULTS = Path(__file__).resolve().parent / "results"
CRITERIA = ("dpo", "simpo", "cpo", "orpo")
SMOKE_SHAPE = ModelShape(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=512)


# lit_prefopt with its default kernels (the prompt encoded once per pair, the LM head only on
# completion tokens, chunked) turned off: the plain padded layout with full-vocabulary logits.
PLAIN = {"data.share_prompt": "false", "model.chunked_logprobs": 0}


def throughput_runs(criterion: str, budget: int) -> list[RunSpec]:
    """TRL with and without its default gradient checkpointing; lit_prefopt with its kernels off,
    with its defaults (kernels on) and with its defaults plus `data.pack=true`, all at the same
    8 pairs per step, and in its best configuration (defaults, token budget batching and, for
    DPO, cached reference log-probs from an earlier run)."""
    live = criterion == "dpo"
    best = {"data.batch_size": "null", "data.max_num_tokens": budget, "reference_cache": str(live).lower()}
    return [
        RunSpec("trl", "trl", criterion, {"gradient_checkpointing": True}, live),
        RunSpec("lit_plain", "lit_prefopt", criterion, PLAIN, live),
        RunSpec("trl_no_gc", "trl", criterion, {"gradient_checkpointing": False}, live),
        RunSpec("lit", "lit_prefopt", criterion, {}, live),
        RunSpec("lit_packed", "lit_prefopt", criterion, {"data.pack": "true"}, live),
        RunSpec("lit_best", "lit_prefopt", criterion, best, False),
    ]


def execute(run: RunSpec, work: Workload, root: Path, env: dict, timeout_s: float, attempt: int = 0) -> dict:
    """Run one spec in its own process and summarize it (or record why it failed); each attempt
    (`--repeats`) gets its own run directory, as a new run of either system needs."""
    run_dir = root / f"{run.criterion}_{run.name}" if attempt == 0 else root / f"{run.criterion}_{run.name}_{attempt}"
    log_path = run_dir.with_suffix(".steps.json")
    if run.system == "trl":
        args = trl_args(run, work, run_dir, log_path)
    else:
        args = lit_args(run, work, run_dir, log_path, root / "cache")
    started, load_before = time.time(), os.getloadavg()[0]
    child = run_child(args, log_path, env, timeout_s)
    result = {"name": run.name, "system": run.system, "criterion": run.criterion, "settings": run.settings,
              "returncode": child.returncode, "wall_s": child.wall_s, "peak_rss_mib": child.peak_rss_mib,
              "started": started, "load_average_1min": [load_before, os.getloadavg()[0]]}
    if child.log is None:
        result["error"] = child.stderr_tail
        print(f"  {run.criterion}/{run.name}: FAILED\n{child.stderr_tail[-1500:]}", flush=True)
        return result
    result.update(summarize(child.log, warmup=min(2, max(0, len(child.log["ends"]) - 2))))
    print(f"  {run.criterion}/{run.name}: {result['pairs_per_s']:.2f} pairs/s, {result['s_per_step']:.2f} s/step, "
          f"{result['peak_rss_mib']:.0f} MiB", flush=True)
    return result


def fastest(attempts: list[dict]) -> dict:
    """The attempt with the lowest s/step (all attempts' s/step kept), or the last failure."""
    timed = [a for a in attempts if "s_per_step" in a]
    if not timed:
        return attempts[-1]
    best = dict(min(timed, key=lambda a: a["s_per_step"]))
    best["attempts_s_per_step"] = [a.get("s_per_step") for a in attempts]
    return best


def add_flops(result: dict, config, tokens_per_pair: float, machine_flops: float) -> None:
    """Achieved model FLOP/s over the timed steps as a fraction of measured matmul FLOP/s: the
    effective figure (`flops_fraction`: the padded layout's work on the non-padding tokens, which
    can exceed 1) and, where the step log has the encoded counts, the MFU of the FLOPs actually
    computed (`mfu_computed`); benchmarks.flops defines both."""
    if "tokens_timed" not in result:
        return
    live, context = result.get("live_reference", False), tokens_per_pair / 2
    seconds = result["s_per_step"] * result["steps_timed"]
    result["model_flops_per_s"] = step_flops(config, result["tokens_timed"], context, live) / seconds
    result["flops_fraction"] = result["model_flops_per_s"] / machine_flops
    if "computed_tokens_timed" in result:
        computed = computed_step_flops(config, result["computed_tokens_timed"], result["head_tokens_timed"], context, live)
        result["computed_flops_per_s"] = computed / seconds
        result["mfu_computed"] = result["computed_flops_per_s"] / machine_flops


def add_ratios(results: list[dict]) -> None:
    """lit_prefopt / TRL, against the faster of TRL's two runs (the target's definition)."""
    for criterion in {r["criterion"] for r in results}:
        runs = [r for r in results if r["criterion"] == criterion and "pairs_per_s" in r]
        trl = [r for r in runs if r["system"] == "trl"]
        if not trl:
            continue
        fastest = max(trl, key=lambda r: r["pairs_per_s"])
        for r in runs:
            if r["system"] == "lit_prefopt":
                r["vs_trl"] = fastest["name"]
                r["pairs_per_s_ratio"] = r["pairs_per_s"] / fastest["pairs_per_s"]
                r["tokens_per_s_ratio"] = r["tokens_per_s"] / fastest["tokens_per_s"]
                r["peak_rss_ratio"] = r["peak_rss_mib"] / fastest["peak_rss_mib"]


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "load_average_before": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="2 steps on a tiny model: checks the script works")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--criteria", nargs="+", default=list(CRITERIA), choices=CRITERIA)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=1, help="throughput runs per setting; the fastest counts")
    parser.add_argument("--budget", type=int, default=2560, help="lit_prefopt best: data.max_num_tokens")
    parser.add_argument("--skip", nargs="*", default=[], choices=["throughput", "memory", "parity"])
    parser.add_argument("--mmap-threshold", type=int, default=32 * 1024 * 1024,
                        help="MALLOC_MMAP_THRESHOLD_ for both systems (0: leave glibc's default)")
    parser.add_argument("--pairs-file", type=Path, default=DEFAULT_PAIRS,
                        help="JSONL text records {src, tgt_chosen, tgt_rejected} (default: the shipped HH-RLHF sample)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--timeout", type=float, default=1200)
    args = parser.parse_args()

    smoke = args.smoke
    steps = 2 if smoke else args.steps
    max_len = 128 if smoke else 512
    env = child_env(args.mmap_threshold or None)
    root = Path(tempfile.mkdtemp(prefix="lit_prefopt_bench_"))
    try:
        corpus = list(read_pairs(args.pairs_file))
        shape = SMOKE_SHAPE if smoke else ModelShape()
        checkpoint = build_checkpoint(root / "model", shape, corpus)
        pairs = write_pairs(args.pairs_file, checkpoint, root / "pairs.jsonl", max_len, limit=64 if smoke else None)
        work = Workload(checkpoint, pairs.path, max_len, 2 if smoke else 8, args.lr, steps)
        config = AutoConfig.from_pretrained(checkpoint)
        report = {
            "machine": machine(),
            "smoke": smoke,
            "matmul_flops_per_s": matmul_flops_per_s((256,) if smoke else (512, 1024, 2048)),
            "workload": {**{k: str(v) for k, v in work.__dict__.items()}, "pairs": pairs.as_dict(),
                         "model": shape.__dict__, "parameters": _parameters(checkpoint)},
            "pairs_file": str(args.pairs_file),
            "env": {"MALLOC_MMAP_THRESHOLD_": env.get("MALLOC_MMAP_THRESHOLD_")},
            "runs": [],
        }
        if "throughput" not in args.skip:
            if "dpo" in args.criteria:  # lit_best reads the cache an earlier run filled, as a sweep's later jobs do
                report["cache"] = reference_cache_runs(work, root, env, args.timeout)
            for criterion in args.criteria:
                runs = throughput_runs(criterion, 4 * max_len if smoke else args.budget)
                # Repeats interleave the systems, so a noisy spell hits both; each keeps its fastest.
                attempts = [[execute(run, work, root, env, args.timeout, attempt) for run in runs] for attempt in range(args.repeats)]
                for index, run in enumerate(runs):
                    result = fastest([repeat[index] for repeat in attempts])
                    result["live_reference"] = run.live_reference
                    add_flops(result, config, pairs.tokens_per_pair, report["matmul_flops_per_s"])
                    report["runs"].append(result)
            add_ratios(report["runs"])
        if "memory" not in args.skip:
            report["memory"] = memory_runs(args.pairs_file, root, env, args.timeout, smoke, corpus)
        if "parity" not in args.skip:
            report["parity"] = parity_runs(work, root, env, args.criteria, args.timeout)
        report["machine"]["load_average_after"] = os.getloadavg()
        args.out.mkdir(parents=True, exist_ok=True)
        stem = "smoke" if smoke else "latest"
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str))
        write_markdown(report, args.out / f"{stem}.md")
        print((args.out / f"{stem}.md").read_text())
    finally:
        shutil.rmtree(root, ignore_errors=True)


def reference_cache_runs(work: Workload, root: Path, env: dict, timeout_s: float) -> dict:
    """DPO with live reference log-probs vs the same run reading them from a warm cache.

    The first cached run fills the cache (its one reference pass is reported too); the second,
    identical, run is the one a sweep's later jobs and every resume get. Both use the kernels,
    so the reference's share of a step is what it is in lit_prefopt's default path.
    """
    runs = {
        "live": RunSpec("cache_live", "lit_prefopt", "dpo", {}, True),
        "cold": RunSpec("cache_cold", "lit_prefopt", "dpo", {"reference_cache": "true"}, False),
        "warm": RunSpec("cache_warm", "lit_prefopt", "dpo", {"reference_cache": "true"}, False),
    }
    results = {name: execute(run, work, root, env, timeout_s) for name, run in runs.items()}
    if all("s_per_step" in r for r in results.values()):
        results["warm_over_live_s_per_step"] = results["warm"]["s_per_step"] / results["live"]["s_per_step"]
        results["cold_pass_s"] = results["cold"]["wall_s"] - results["warm"]["wall_s"]
    return results


def memory_runs(pairs_file: Path, root: Path, env: dict, timeout_s: float, smoke: bool, corpus: list[dict]) -> dict:
    """Peak RSS with a 128,256-entry vocabulary, ~1,800-token pairs, 2 pairs per step, 2,048 cap."""
    shape = SMOKE_SHAPE if smoke else ModelShape()
    vocab = 4096 if smoke else 128_256
    checkpoint = build_checkpoint(root / "model_128k", shape, corpus, model_vocab=vocab)
    prompt_tokens = 100 if smoke else 1_650
    pairs = write_long_pairs(pairs_file, checkpoint, root / "long_pairs.jsonl", prompt_tokens, count=8 if smoke else 24)
    work = Workload(checkpoint, pairs.path, 256 if smoke else 2048, 2, 1e-4, 2 if smoke else 4)
    runs = [
        RunSpec("mem_trl", "trl", "dpo", {"gradient_checkpointing": True}, True),
        RunSpec("mem_trl_no_gc", "trl", "dpo", {"gradient_checkpointing": False}, True),
        RunSpec("mem_lit_plain", "lit_prefopt", "dpo", PLAIN, True),
        RunSpec("mem_lit", "lit_prefopt", "dpo", {}, True),
        RunSpec("mem_lit_cache_fill", "lit_prefopt", "dpo", {"reference_cache": "true"}, False),
        RunSpec("mem_lit_best", "lit_prefopt", "dpo", {"reference_cache": "true"}, False),
        RunSpec("mem_lit_best_no_gc", "lit_prefopt", "dpo", {"reference_cache": "true", "model.gradient_checkpointing": "false"}, False),
    ]
    results = [execute(run, work, root, env, timeout_s) for run in runs]
    trl = min((r for r in results if r["system"] == "trl" and "pairs_per_s" in r), key=lambda r: r["peak_rss_mib"], default=None)
    for r in results:
        if trl is not None and r["system"] == "lit_prefopt":
            r["peak_rss_ratio"] = r["peak_rss_mib"] / trl["peak_rss_mib"]
            r["vs_trl"] = trl["name"]
    return {"vocab_size": vocab, "pairs": pairs.as_dict(), "runs": results}


def parity_runs(work: Workload, root: Path, env: dict, criteria: list[str], timeout_s: float) -> dict:
    """First-step loss and log-probs of both systems on the same batch, in a child process."""
    out = root / "parity.json"
    spec = root / "parity_spec.json"
    spec.write_text(json.dumps({"checkpoint": str(work.checkpoint), "pairs": str(work.pairs),
                                "max_seq_len": work.max_seq_len, "batch_size": work.batch_size,
                                "criteria": criteria, "out": str(out), "output_dir": str(root / "parity")}))
    child = run_child(["-m", "benchmarks.parity", str(spec)], out, env, timeout_s)
    return child.log if child.log is not None else {"error": child.stderr_tail}


def _parameters(checkpoint: Path) -> int:
    from safetensors import safe_open

    total = 0
    for file in checkpoint.glob("*.safetensors"):
        with safe_open(file, "pt") as tensors:
            total += sum(_numel(tensors.get_slice(name).get_shape()) for name in tensors.keys())
    return total


def _numel(shape: list[int]) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


if __name__ == "__main__":
    main()
