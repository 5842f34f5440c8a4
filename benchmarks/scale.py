"""Scale on CPU: FSDP2 over 2 gloo processes, a ~320M-parameter Llama, before and after the scale
work (bf16 FSDP2 policy, sharded loading and export).

`python -m benchmarks.scale` builds a Llama of random weights from a config (bf16 safetensors, as
checkpoints are published; a byte-level BPE tokenizer trained on the bundled pairs), saves it once
under the cache directory, and trains DPO on it for a few steps in two configurations:

- after: the defaults of a real-model config under `strategy=fsdp trainer.precision=bf16-mixed`
  (FSDP2's bf16 policy with float32 master shards, bf16 reference, activation checkpointing,
  each rank reading its own slices, the streamed export in the source dtype);
- before: `model.reference_dtype=float32 model.gradient_checkpointing=false export_dtype=float32`
  plus the three old code paths that no setting reaches any more, rebuilt in
  benchmarks/before_paths.py (autocast over float32 all-gathers, rank 0's read and broadcast,
  the gather-and-rebuild export).

Per rank it records the peak resident memory (VmHWM after a reset through /proc/self/clear_refs)
of loading, training and export, seconds per step, and the bytes FSDP2's parameter all-gathers
move per step. Writes `scale.json` and `scale.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.multiprocessing as mp

from benchmarks.collectives import AllGatherCounter
from benchmarks.fixture import DEFAULT_PAIRS, ModelShape, read_pairs
from benchmarks.resident_memory import reset_peak, status_bytes
from benchmarks.step_log import StepLog, summarize

# ~322M parameters: 20 layers of width 1024, MLP 2816, a 32k vocabulary, untied head.
FULL_SHAPE = ModelShape(hidden_size=1024, num_hidden_layers=20, num_attention_heads=16, num_key_value_heads=16,
                        intermediate_size=2816, vocab_size=32000)
SMOKE_SHAPE = ModelShape(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         intermediate_size=128, vocab_size=2048)
TOKENIZER_VOCAB = 2048
VARIANTS = ("before", "after")
MIB = 2**20


def build_checkpoint(target: Path, shape: ModelShape, pairs: Path) -> Path:
    """A bf16 Llama of `shape` with random weights and a BPE tokenizer, saved once under `target`."""
    if (target / "config.json").exists():
        return target
    from transformers import LlamaConfig, LlamaForCausalLM

    from lit_prefopt.models.tiny import build_tokenizer

    corpus = list(read_pairs(pairs))
    tokenizer = build_tokenizer((t for p in corpus for t in (p["src"], p["tgt_chosen"], p["tgt_rejected"])),
                                vocab_size=TOKENIZER_VOCAB)
    torch.manual_seed(0)
    config = LlamaConfig(**shape.__dict__, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    staging = target.with_name(target.name + ".saving")
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    staging.rename(target)
    return target


def probe(gathers: AllGatherCounter, record: dict):
    """A Lightning callback filling `record` with one rank's memory, step ends and all-gathered bytes
    (defined in the rank: Lightning is imported there)."""
    from lightning.pytorch import Callback

    steps = StepLog()
    record["steps"] = steps

    class Probe(Callback):
        def setup(self, trainer, pl_module, stage: str) -> None:
            record["rss_before_load"] = reset_peak()  # before configure_model loads both models

        def on_train_start(self, trainer, pl_module) -> None:
            record["load_peak"] = status_bytes("VmHWM")
            record["rss_before_train"] = reset_peak()

        def on_train_batch_start(self, *args) -> None:
            gathers.recording = True

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
            gathers.recording = False
            record["gathered_bytes"].append(gathers.received_bytes - sum(record["gathered_bytes"]))
            steps.record(batch.num_real_pairs, batch.num_tokens())

        def on_train_end(self, trainer, pl_module) -> None:
            record["train_peak"] = status_bytes("VmHWM")

    return Probe()


def worker(rank: int, port: int, spec: dict) -> None:
    """One rank of one configuration: fit `spec["steps"]` steps, export, write this rank's figures."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), NODE_RANK="0")
    from contextlib import nullcontext

    from lightning.pytorch import Trainer

    from benchmarks import before_paths
    from lit_prefopt.criteria.dpo import DPO
    from lit_prefopt.data.datamodule import PreferenceDataModule
    from lit_prefopt.models.checkpoint import HFCheckpoint
    from lit_prefopt.models.export import export_hf
    from lit_prefopt.module import PreferenceModule
    from lit_prefopt.strategies import FullyShardedStrategy

    before = spec["variant"] == "before"
    gathers = AllGatherCounter().install()
    record: dict = {"gathered_bytes": []}
    checkpoint = HFCheckpoint(path=spec["model"], dtype="float32", reference_dtype="float32" if before else None,
                              gradient_checkpointing=not before)
    module = PreferenceModule(checkpoint, DPO(), optimizer=partial(torch.optim.AdamW, lr=1e-5))
    data = PreferenceDataModule(train_files=[spec["pairs"]], batch_size=spec["batch_size"],
                                max_seq_len=spec["max_seq_len"], shuffle=False)
    tokenizer = checkpoint.load_tokenizer()
    data.set_tokenizer(tokenizer)
    strategy = before_paths.AutocastFullyShardedStrategy() if before else FullyShardedStrategy()
    trainer = Trainer(accelerator="cpu", devices=2, strategy=strategy, precision="bf16-mixed",
                      max_steps=spec["steps"], gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[probe(gathers, record)])
    with before_paths.broadcast_loading() if before else nullcontext():
        trainer.fit(module, datamodule=data)
    target = Path(spec["work"]) / f"hf-{spec['variant']}"
    start = reset_peak()
    started = time.perf_counter()
    if before:
        before_paths.gather_and_rebuild_export(module.policy, target, trainer.is_global_zero)
    else:
        export_hf(module, tokenizer, target, trainer.is_global_zero)
    record["export_s"] = time.perf_counter() - started
    record["export_peak"] = status_bytes("VmHWM")
    record["rss_before_export"] = start
    record["export_bytes"] = sum(p.stat().st_size for p in target.glob("*.safetensors")) if rank == 0 else None
    record["gathered_numel_by_dtype"] = dict(gathers.sent_numel)
    steps = record.pop("steps")
    record["step_log"] = steps.__dict__
    Path(spec["work"], f"{spec['variant']}.rank{rank}.json").write_text(json.dumps(record))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rank_figures(record: dict) -> dict:
    """One rank's figures in MiB and seconds (rises are from the reset just before each phase)."""
    timing = summarize(record["step_log"], warmup=0)
    timed = record["gathered_bytes"][1:] or record["gathered_bytes"]
    return {
        "load_peak_mib": record["load_peak"] / MIB,
        "load_rise_mib": (record["load_peak"] - record["rss_before_load"]) / MIB,
        "train_peak_mib": record["train_peak"] / MIB,
        "train_rise_mib": (record["train_peak"] - record["rss_before_train"]) / MIB,
        "s_per_step": timing["s_per_step"],
        "step_s": [b - a for a, b in zip(record["step_log"]["ends"], record["step_log"]["ends"][1:])],
        "all_gather_mib_per_step": sum(timed) / len(timed) / MIB,
        "all_gather_mib_each_step": [b / MIB for b in record["gathered_bytes"]],
        "gathered_dtypes": sorted(record["gathered_numel_by_dtype"]),
        "export_peak_mib": record["export_peak"] / MIB,
        "export_rise_mib": (record["export_peak"] - record["rss_before_export"]) / MIB,
        "export_s": record["export_s"],
        "export_file_mib": None if record["export_bytes"] is None else record["export_bytes"] / MIB,
    }


def run_variant(variant: str, spec: dict, load_average: dict) -> list[dict]:
    """Both ranks of one configuration; `load_average` gets the 1-minute load before and after it
    (other processes on the machine slow the steps)."""
    spec = {**spec, "variant": variant}
    started = time.perf_counter()
    load_average[variant] = [os.getloadavg()[0]]
    mp.start_processes(worker, args=(free_port(), spec), nprocs=2, start_method="spawn")
    load_average[variant].append(os.getloadavg()[0])
    print(f"{variant}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return [rank_figures(json.loads(Path(spec["work"], f"{variant}.rank{r}.json").read_text())) for r in range(2)]


COUNTS = """\
What each figure counts (per rank; RSS is /proc/self/status, the peak VmHWM reset by writing 5 to
/proc/self/clear_refs just before the phase; a rise is the peak minus VmRSS at that reset):

- loading: from the Trainer's setup hook (before `configure_model`) to the start of training:
  policy and reference, built on the meta device, sharded and filled;
- training: from the start of training to its end (all steps, optimizer state created at step 1);
- s/step: mean interval between the ends of consecutive optimizer steps after the first (data,
  forward, backward, optimizer, clipping all inside);
- all-gathered MiB per step: bytes received by FSDP2's parameter all-gathers (policy forward and
  backward, reference forward; `all_gather_single`, or `all_gather_into_tensor` before torch 2.13)
  during one training batch, from the first step on (every step moves the same);
- export: the `hf/` export after training (rank 0 writes; every rank takes part in the gathers).

"before" is `model.reference_dtype=float32 model.gradient_checkpointing=false export_dtype=float32`
(settings that still exist) plus three old code paths no setting reaches any more, rebuilt in
benchmarks/before_paths.py from the code they replaced, so those parts of "before" are
reconstructions: Lightning's bf16 autocast over FSDP2's default float32 policy, rank 0 reading the
whole checkpoint and broadcasting it (`broadcast_from_rank0`), and the export that gathers a float32
state dict and loads it into a second model built with `from_config`. "after" is today's defaults
under `strategy=fsdp trainer.precision=bf16-mixed` with the real-model configs' activation
checkpointing.
"""


def markdown(report: dict) -> str:
    rows = [
        ("peak RSS while loading, MiB (rise)", "load_peak_mib", "load_rise_mib"),
        ("peak RSS while training, MiB (rise)", "train_peak_mib", "train_rise_mib"),
        ("s/step", "s_per_step", None),
        ("all-gathered MiB per step (received)", "all_gather_mib_per_step", None),
        ("peak RSS during export, MiB (rise)", "export_peak_mib", "export_rise_mib"),
        ("export s", "export_s", None),
    ]
    runs = report["variants"]
    head = "| figure | " + " | ".join(f"{v} rank {r}" for v in runs for r in range(2)) + " |"
    lines = [head, "|---|" + "---:|" * (2 * len(runs))]
    for label, key, rise in rows:
        cells = []
        for v in runs:
            for figures in runs[v]:
                cell = f"{figures[key]:,.1f}" if key in ("s_per_step", "export_s") else f"{figures[key]:,.0f}"
                cells.append(cell + (f" ({figures[rise]:+,.0f})" if rise else ""))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    dtypes = ", ".join(f"{v} {'/'.join(runs[v][0]['gathered_dtypes'])}" for v in runs)
    files = ", ".join(f"{v} {runs[v][0]['export_file_mib']:,.0f}" for v in runs)
    shape = ", ".join(f"{k} {v}" for k, v in report["shape"].items())
    return "\n".join([
        "# Scale on CPU: FSDP2, 2 gloo processes, before and after the scale work (bf16 FSDP2 policy, sharded loading and export)", "",
        f"Command: `{report['command']}`", "",
        f"Machine: {report['machine']}", "",
        f"Model: Llama ({shape}), {report['parameters'] / 1e6:.0f}M parameters, random weights, "
        f"stored in bf16 ({report['checkpoint_mib']:,.0f} MiB). DPO with a live reference, "
        f"{report['batch_size']} pair(s) per rank per step, at most {report['max_seq_len']} tokens, "
        f"{report['steps']} steps, float32 master weights, AdamW, gradient clipping 1.0.", "",
        *lines, "",
        f"All-gather dtypes: {dtypes}. `hf/` export size, MiB: {files}.", "",
        *([f"1-minute load average before and after each run: {report['load_average_1min']}.", ""]
          if "load_average_1min" in report else []),
        COUNTS,
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a tiny model: checks the script in seconds")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1, help="pairs per rank per step")
    parser.add_argument("--max-seq-len", type=int, default=128)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "lit_prefopt" / "benchmarks", help="where the model checkpoint is saved once")
    args = parser.parse_args(argv)
    shape = SMOKE_SHAPE if args.smoke else FULL_SHAPE
    name = "scale_smoke" if args.smoke else "scale"
    key = "-".join(str(v) for v in shape.__dict__.values())
    model = build_checkpoint(args.cache / f"scale-llama-{key}", shape, DEFAULT_PAIRS)
    checkpoint_bytes = sum(p.stat().st_size for p in model.glob("*.safetensors"))
    with tempfile.TemporaryDirectory(prefix="scale-") as work:
        spec = {"model": str(model), "pairs": str(DEFAULT_PAIRS), "steps": args.steps, "batch_size": args.batch_size,
                "max_seq_len": args.max_seq_len, "work": work}
        load_average: dict[str, list[float]] = {}
        variants = {v: run_variant(v, spec, load_average) for v in args.variants}
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        parameters = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
                         .parameters())
    report = {
        "command": " ".join(["python -m benchmarks.scale", shlex.join(argv if argv is not None else sys.argv[1:])]).strip(),
        "machine": f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
                   f"torch {torch.__version__}, Linux {platform.release()}",
        "shape": shape.__dict__, "parameters": parameters, "checkpoint_mib": checkpoint_bytes / MIB,
        "steps": args.steps, "batch_size": args.batch_size, "max_seq_len": args.max_seq_len, "variants": variants,
        "load_average_1min": load_average,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
