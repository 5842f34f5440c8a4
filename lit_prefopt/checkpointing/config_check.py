"""What a resume may change: the config a checkpoint was trained with against the new one.

A resume continues the same training. Settings that only say how long, where, how often or on
which devices it runs may change, and are listed in the log. Settings that change what is trained
(criterion and its hyperparameters, model, reference, training data, tokenization, batch shape,
optimizer, schedule, seed, ...: every key not listed in `MAY_CHANGE`) are refused with the
differing keys, unless `resume_allow_changes=true`. Training data is compared by content digest
(`data_digests`, stored in the checkpoint's config), not by path: a moved or reinstalled copy of
the same files is the same data. Hashing reads every data file, so it is done once per node, not
by every process (`shared_data_digests`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lit_prefopt.callbacks.reference_cache import file_digest
from lit_prefopt.data.node_share import WAIT_SECONDS, share_on_node
from lit_prefopt.data.sources import resolve_sources

log = logging.getLogger(__name__)

DIGESTS_KEY = "data_digests"
DIGESTS_FILE = "data_digests.json"
DATA_KEYS = ("train_files", "val_files")
# Keys (or whole groups, by prefix) that a resume may change: none changes what is trained.
MAY_CHANGE = (
    "run_name", "run_dir", "ckpt_path", "cache_dir", "reference_cache", "optimized_metric",
    "validate_before_training", "export_hf", "max_consecutive_skips", "resume_allow_changes",
    "checkpoint", "logger", "callbacks", "strategy", "hparams_search",
    "trainer.max_steps", "trainer.max_epochs", "trainer.max_time", "trainer.devices", "trainer.num_nodes",
    "trainer.accelerator", "trainer.log_every_n_steps", "trainer.val_check_interval",
    "trainer.check_val_every_n_epoch", "trainer.limit_val_batches", "trainer.num_sanity_val_steps",
    "trainer.enable_progress_bar", "trainer.enable_model_summary", "trainer.default_root_dir", "trainer.profiler",
    "data.train_files", "data.val_files", "data.validate", "data.num_workers", "data.max_dropped_fraction",
    f"{DIGESTS_KEY}.val_files",
    "model.compile", "model.gradient_checkpointing", "model.chunked_logprobs", "model.attn_implementation",
    "model.cache_dir", "optimizer.fused", "optimizer.foreach",
)
# Allowed here, but the data stream's saved position is per rank and per worker.
LAYOUT_KEYS = ("trainer.devices", "trainer.num_nodes", "strategy", "data.num_workers")


class ResumeConfigMismatch(ValueError):
    """The new config changes what the checkpoint was trained with."""


def data_digests(data: Any) -> dict[str, str | None]:
    """sha256 over the contents of the files each data key reads, in reading order."""
    digests: dict[str, str | None] = {}
    for key in DATA_KEYS:
        inputs = data.get(key)
        if not inputs:
            digests[key] = None
            continue
        sources = resolve_sources(inputs, f"data.{key}")
        combined = hashlib.sha256()
        for path in sources.files:
            combined.update(file_digest(Path(path)).encode())
        digests[key] = combined.hexdigest()
    return digests


def shared_data_digests(data: Any, run_dir: Path, rank_on_node: int, wait_seconds: float = WAIT_SECONDS
                        ) -> dict[str, str | None]:
    """`data_digests` computed by the node's first process and read by the others from `run_dir`.

    The result is keyed by each file's resolved path, size and modification time, so the others
    take only digests of the files they see themselves, never those an earlier run left for other
    or since changed files (they wait for the node's new ones instead).
    """
    return share_on_node(lambda: data_digests(data), run_dir / DIGESTS_FILE, {"files": _stamps(data)}, rank_on_node,
                         dict, dict, wait_seconds=wait_seconds)


def _stamps(data: Any) -> dict[str, list[list[Any]] | None]:
    """(resolved path, size, modification time) of the files each data key reads: cheap, no file is read."""
    stamps: dict[str, list[list[Any]] | None] = {}
    for key in DATA_KEYS:
        inputs = data.get(key)
        files = resolve_sources(inputs, f"data.{key}").files if inputs else None
        stamps[key] = None if files is None else [
            [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns] for path in files for stat in [Path(path).stat()]
        ]
    return stamps


def check_resume_config(saved: dict[str, Any], new: dict[str, Any], checkpoint: Path, allow_changes: bool) -> None:
    """Log the allowed differences; raise `ResumeConfigMismatch` listing the others (unless allowed)."""
    before, after = _flatten(saved), _flatten(new)
    keys = before.keys() | after.keys()
    changed = sorted(key for key in keys if before.get(key, "<unset>") != after.get(key, "<unset>"))
    if not saved or not changed:
        return
    # Data paths are judged by their digests; a checkpoint from before digests were stored has none.
    may_change = MAY_CHANGE
    if not any(key.startswith(DIGESTS_KEY + ".") for key in before):
        changed = [key for key in changed if not key.startswith(DIGESTS_KEY + ".")]
        may_change = tuple(key for key in MAY_CHANGE if key != "data.train_files")
    allowed = [key for key in changed if _matches(key, may_change)]
    refused = [key for key in changed if key not in allowed]
    if allowed:
        log.info("Resuming %s with changed settings (allowed): %s", checkpoint, _describe(allowed, before, after))
    if any(_matches(key, LAYOUT_KEYS) for key in allowed):
        log.info("A changed world size or data.num_workers is refused when the data stream resumes its position")
    if not refused:
        return
    message = (
        f"ckpt_path: {checkpoint} was trained with other settings, and resuming would change what is trained:\n  "
        + _describe(refused, before, after, "\n  ")
        + "\nResume with the run's settings (its earlier .hydra/config.*.yaml), start a new run (another "
        "run_name; model.path can point at this checkpoint), or pass resume_allow_changes=true to continue "
        "with the changes anyway. (A changed world size is refused by the data loader in any case.)"
    )
    if any(key.startswith("scheduler.total_steps") for key in refused):
        message += "\n" + _schedule_hint(before)
    if allow_changes:
        log.warning("resume_allow_changes=true: %s", message)
        return
    raise ResumeConfigMismatch(message)


def _schedule_hint(before: dict) -> str:
    """How to extend a run whose decaying schedule was defined over its old trainer.max_steps."""
    total, final = before.get("scheduler.total_steps"), before.get("scheduler.final_lr_scale", 0.0)
    stretch = "resume_allow_changes=true stretches it over the new max_steps (from the first resumed step on)"
    if final:
        return (
            "The learning-rate schedule is defined over trainer.max_steps: a longer run would restart its decay at a "
            f"higher rate. Keep the schedule with scheduler.total_steps={total} (the rate then stays at its final "
            f"value, final_lr_scale={final} x lr), or {stretch}."
        )
    return (
        f"The learning-rate schedule decays to 0 at step {total}, so keeping it (scheduler.total_steps={total}) would "
        f"train nothing after that: {stretch}, or start a new run from this checkpoint (model.path=<its path>) with "
        "a schedule of its own (e.g. scheduler=constant)."
    )


def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def _describe(keys: list[str], before: dict[str, Any], after: dict[str, Any], separator: str = ", ") -> str:
    return separator.join(f"{key}: {before.get(key, '<unset>')!r} -> {after.get(key, '<unset>')!r}" for key in keys)


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
