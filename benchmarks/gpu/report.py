"""The Markdown page of a GPU check (the JSON beside it has every number)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report import _fmt


def _header(report: dict) -> list[str]:
    m = report["machine"]
    where = f"{m['gpu']} (sm {m['capability']}, CUDA {m['cuda']})" if m["gpu"] else f"no GPU ({m['device']})"
    smoke = " (smoke run on tiny shapes: numbers mean nothing)" if report["smoke"] else ""
    if report.get("complete", True):
        verdict = "PASSED" if report["passed"] else "FAILED"
    else:
        verdict = f"INCOMPLETE (stopped or still running after the sections below: {', '.join(report['sections'])})"
    return [f"# GPU check{smoke}", "",
            f"{verdict} in {report['seconds']:.0f} s on {where}; "
            f"torch {m['torch']}, transformers {m['transformers']}, lightning {m['lightning']}, trl {m['trl']}."]


def _failed(section: dict) -> list[str]:
    return [f"Section failed: `{section['error']}` (traceback in the JSON)."] if "error" in section else []


def _parity(section: dict) -> list[str]:
    lines = ["| precision | kernels | sums rel. error | grads rel. error | plain's (sums / grads) | bound | passed |",
             "|---|---|---|---|---|---|---|"]
    for c in section.get("checks", []):
        if "error" in c:
            lines.append(f"| {c['precision']} | {c['kernels']} | FAILED: {c['error'][:160]} | | | | False |")
            continue
        lines.append(f"| {c['precision']} | {c['kernels']} | {c['sums_rel']:.1e} | {c['grads_rel']:.1e} | "
                     f"{c['plain']['sums_rel']:.1e} / {c['plain']['grads_rel']:.1e} | "
                     f"{c['bound']['sums_rel']:.1e} / {c['bound']['grads_rel']:.1e} | {c['passed']} |")
    lines += [f"- {kernels}: skipped ({reason})" for kernels, reason in section.get("skipped_kernels", {}).items()]
    lines += ["", "DPO loss at step 0 (policy == reference, must be log 2 = 0.693147):", ""]
    lines += [f"- {c['precision']}, {c['kernels']}: {c['loss']:.6f} (error {c['abs_error']:.1e}) {c['passed']}"
              for c in section.get("dpo_step_zero", [])]
    lines += [f"- {precision}: skipped ({reason})" for precision, reason in section.get("skipped", {}).items()]
    if "rotary" in section:
        r = section["rotary"]
        lines += ["", f"Rotary cos/sin at positions below {r['positions']} under float32_matmul_precision=high, max "
                  f"difference from `highest`: {r['guarded_max_diff']:.1e} with lit_prefopt's guard (must be 0), "
                  f"{r['unguarded_max_diff']:.1e} without it. {r['passed']}"]
    return lines


def _attention(section: dict) -> list[str]:
    lines = ["Every backend is built by lit_prefopt.kernels.attention from the `data.share_prompt` collate's "
             "segment ids.", "",
             "| rows x tokens | backend | status | ms fwd+bwd | peak MiB | first call s | max diff vs float32 dense |",
             "|---|---|---|---|---|---|---|"]
    for r in section.get("results", []):
        status = {"ok": r.get("kernel", "ok"), "skipped": f"skipped: {r.get('reason')}",
                  "failed": f"FAILED: {r.get('error', '')[:120]}"}[r["status"]]
        lines.append(f"| {r['rows']} x {r['length']} | {r['backend']} | {status} | {_fmt(r.get('ms_fwd_bwd'))} | "
                     f"{_fmt(r.get('peak_mib'), 0)} | {_fmt(r.get('first_call_s'))} | "
                     f"{_fmt(r.get('max_abs_diff_vs_dense'), 4)} |")
    return lines


def _e2e(section: dict) -> list[str]:
    lines = ["| run | overrides | exit | wall s | peak GiB | checks (None: not applicable) |",
             "|---|---|---|---|---|---|"]
    for r in section.get("runs", []):
        checks = ", ".join(f"{k}={v}" for k, v in r["checks"].items())
        lines.append(f"| {r['name']} | `{' '.join(r['overrides'])}` | {r['returncode']} | {_fmt(r['wall_s'], 0)} | "
                     f"{_fmt(r.get('peak_cuda_gib'))} | {checks} |")
    return lines


def _trl(section: dict) -> list[str]:
    if "runs" not in section:
        return []
    peak = section["bf16_matmul_flops_per_s"]
    lines = [f"{section['parameters']:,} parameters ({section['model']}), {section['batch_size']} pairs/step, "
             f"{section['steps']} steps (rates after up to 2 warm-up steps), "
             f"{section['pairs']['tokens_per_pair']:.0f} tokens per pair "
             f"(prompt counted twice). Measured bf16 matmul peak: "
             f"{_fmt(peak / 1e12 if peak else None)} TFLOP/s. MFU counts the padded layout's work; runs that "
             "encode the prompt once (lit) do less, so theirs is effective MFU.", "",
             "| run | pairs/s | tokens/s | s/step | peak GPU GiB | MFU | pairs/s vs TRL | peak vs TRL |",
             "|---|---|---|---|---|---|---|---|"]
    for r in section["runs"]:
        if "pairs_per_s" not in r:
            lines.append(f"| {r['name']} | failed (rc {r['returncode']}) | | | | | | |")
            continue
        lines.append(f"| {r['name']} | {_fmt(r['pairs_per_s'])} | {_fmt(r['tokens_per_s'], 0)} | "
                     f"{_fmt(r['s_per_step'])} | {_fmt(r.get('peak_cuda_gib'))} | {_fmt(r.get('mfu'), 3)} | "
                     f"{_fmt(r.get('pairs_per_s_vs_trl'))} | "
                     f"{_fmt(r.get('peak_cuda_gib_vs_trl'))} |")
    return lines


SECTION_TABLES = {"parity": ("Kernel parity", _parity), "attention": ("Attention backends", _attention),
                  "e2e": ("End to end", _e2e), "trl": ("Against TRL's DPOTrainer", _trl)}


def write_markdown(report: dict, target: Path) -> None:
    lines = _header(report)
    for name, section in report["sections"].items():
        title, table = SECTION_TABLES[name]
        lines += ["", f"## {title}: {'passed' if section['passed'] else 'FAILED'} ({section['seconds']:.0f} s)", ""]
        lines += _failed(section) + table(section)
    target.write_text("\n".join(lines) + "\n")
