"""The Markdown table of a benchmark report (the JSON beside it has every number)."""

from __future__ import annotations

from pathlib import Path


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _run_row(r: dict) -> str:
    if "pairs_per_s" not in r:
        return f"| {r['criterion']} | {r['name']} | failed (rc {r['returncode']}) | | | | | | | | | | | |"
    return (
        f"| {r['criterion']} | {r['name']} | {_fmt(r['pairs_per_s'])} | {_fmt(r['tokens_per_s'], 0)} | "
        f"{_fmt(r['s_per_step'])} | {_fmt(r['s_per_step_median'])} | {_fmt(r['pairs_per_step'], 1)} | {_fmt(r['peak_rss_mib'], 0)} | "
        f"{_fmt(r.get('pairs_per_s_ratio'))} | {_fmt(r.get('peak_rss_ratio'))} | {_fmt(r.get('padding_fraction'), 3)} | "
        f"{_fmt(r.get('mfu_computed'), 3)} | {_fmt(r.get('flops_fraction'), 3)} | "
        f"{_fmt(r['load_average_1min'][0], 1)} / {_fmt(r['load_average_1min'][1], 1)} |"
    )


def write_markdown(report: dict, target: Path) -> None:
    m, w = report["machine"], report["workload"]
    lines = [
        f"# lit_prefopt vs TRL{' (smoke run: numbers mean nothing)' if report['smoke'] else ''}",
        "",
        f"Machine: {m['platform']}, {m['cpus']} CPUs; load average before {_fmt(list(m['load_average_before']))}, "
        f"after {_fmt(list(m.get('load_average_after', [])))}. Matmul float32: {report['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s.",
        f"Model: {w['parameters']:,} parameters ({w['model']}). Pairs: {w['pairs']['pairs']} kept "
        f"({w['pairs']['dropped_too_long']} over {w['max_seq_len']} tokens left out), "
        f"{w['pairs']['tokens_per_pair']:.0f} tokens per pair (prompt counted twice). "
        f"{w['batch_size']} pairs/step, {w['steps']} steps, lr {w['lr']}, MALLOC_MMAP_THRESHOLD_={report['env']['MALLOC_MMAP_THRESHOLD_']} for both.",
        "",
        "Ratios are lit_prefopt over the faster TRL run of the same criterion. Padding fraction: padded positions "
        "over all positions of the batch the model encoded (TRL: its padded [2B, L] batch; lit: the shared-prompt "
        "rows, packed for lit_packed; lit_plain: the padded rows). MFU (computed): model FLOPs the run actually "
        "computed (non-padding positions encoded, a shared prompt once, the LM head only where it ran) per second "
        "over the measured matmul FLOP/s. Effective FLOP fraction: the padded layout's model FLOPs on the "
        "non-padding tokens (prompt counted twice, LM head on every token) per second over the same peak; runs that "
        "skip that work score higher than their MFU and can exceed 1, so it measures speed, not utilisation.",
        "",
        "| criterion | run | pairs/s | tokens/s | s/step | median s/step | pairs/step | peak RSS MiB | pairs/s ratio | RSS ratio "
        "| padding fraction | MFU (computed) | effective FLOP fraction | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_run_row(r) for r in report["runs"]),
    ]
    if "cache" in report:
        c = report["cache"]
        lines += ["", "## Reference log-prob cache (DPO, like-for-like batches)", "",
                  "| run | s/step | wall s |", "|---|---|---|",
                  *(f"| {name} | {_fmt(r.get('s_per_step'))} | {_fmt(r.get('wall_s'), 1)} |" for name, r in c.items() if isinstance(r, dict)),
                  "", f"Warm cache / live reference, s/step: {_fmt(c.get('warm_over_live_s_per_step'))}."]
    if "memory" in report:
        mem = report["memory"]
        lines += ["", f"## Memory: vocabulary {mem['vocab_size']:,}, {mem['pairs']['tokens_per_pair'] / 2:.0f}-token rows, 2 pairs/step", "",
                  *([mem["source"], ""] if "source" in mem else []),
                  "| run | peak RSS MiB | ratio vs lowest TRL | s/step |", "|---|---|---|---|",
                  *(f"| {r['name']} | {_fmt(r['peak_rss_mib'], 0)} | {_fmt(r.get('peak_rss_ratio'))} | {_fmt(r.get('s_per_step'))} |" for r in mem["runs"])]
    if "parity" in report and "criteria" in report["parity"]:
        lines += ["", f"## First-step parity (tolerance {report['parity']['tolerance']})", "",
                  "| criterion | batch | same tokens | loss diff | pref-loss diff | logps chosen diff | logps rejected diff |",
                  "|---|---|---|---|---|---|---|"]
        for criterion, sizes in report["parity"]["criteria"].items():
            for size, r in sizes.items():
                d = r["abs_diff"]
                lines.append(f"| {criterion} | {size} | {r['same_tokens']} | {d['loss']:.2e} | {d['pref_loss']:.2e} | "
                             f"{d['logps_chosen']:.2e} | {d['logps_rejected']:.2e} |")
    target.write_text("\n".join(lines) + "\n")
