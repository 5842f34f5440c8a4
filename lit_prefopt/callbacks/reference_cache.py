"""Reference log-prob cache: one reference pass per (reference, tokenizer, data, truncation).

A DPO sweep of 20 betas, a resume, a second epoch: each needs the same reference log-probs of
the same pairs. The first run computes them in one pass and stores them under `cache_dir`
(never beside the data); every later run with the same inputs reads them and loads no
reference model at all. The key is a hash of everything that changes the numbers: the
reference checkpoint's files, the tokenizer, the data files' bytes and the data settings that
shape the tokens (`max_seq_len`, truncation, ...), and the dtype the reference runs in
(`model.reference_dtype`). Change any of them and the key changes, so a stale entry is never read.
Rank 0 alone hashes (the other ranks take its key).

A missing entry is filled by the live reference source, loaded as training would load it: in
`model.reference_dtype`, and under FSDP sharded like the policy (never a full copy per rank).
Each rank scores its own shard of the data into its own part file; after a barrier
every rank reads all parts (two floats per pair). Files are written to a temporary name and
renamed, so concurrent sweep jobs computing the same entry cannot corrupt it. Within an entry a
pair is found by a digest of its chosen and rejected token ids, so records need no `id` and
any order, sharding or batching of the same data finds the same scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import move_data_to_device

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.reference.pair_keys import pair_keys
from lit_prefopt.reference.source import CachedScores, LiveReference

log = logging.getLogger(__name__)

# The data settings that change which tokens a pair becomes (and so its log-probs).
TOKEN_SHAPING_KEYS = ("max_seq_len", "truncation", "mask_source_tokens", "on_bad_record")


def file_digest(path: Path, memo: dict[str, Any] | None = None) -> str:
    """sha256 of a file's bytes; `memo` remembers digests by (path, size, mtime) across runs."""
    stat = path.stat()
    stamp = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    if memo is not None and stamp in memo:
        return memo[stamp]
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if memo is not None:
        memo[stamp] = digest.hexdigest()
    return digest.hexdigest()


def tree_digest(paths: Iterable[str | Path], memo: dict[str, Any] | None = None) -> list[list[str]]:
    """[(relative name, digest)] of files and of every file below directories, in a stable order."""
    entries = []
    for root in map(Path, paths):
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        entries += [[str(f.relative_to(root) if root.is_dir() else f.name), file_digest(f, memo)] for f in files]
    return entries


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """What decides token ids: the vocabulary and merges, special tokens and chat template."""
    backend = tokenizer.backend_tokenizer.to_str() if hasattr(tokenizer, "backend_tokenizer") else repr(tokenizer)
    extra = [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, getattr(tokenizer, "chat_template", None)]
    return hashlib.sha256((backend + json.dumps(extra, default=str)).encode()).hexdigest()


def cache_key(
    reference_dir: str,
    tokenizer: Any,
    data_files: Iterable[str],
    data_settings: dict[str, Any],
    dtype: str,
    memo: dict[str, Any] | None = None,
) -> str:
    """The hash naming a cache entry; any input that changes the log-probs changes it."""
    weights = [entry for entry in tree_digest([reference_dir], memo) if not entry[0].startswith("tokenizer")]
    key = {
        "reference": weights,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "data": tree_digest(data_files, memo),
        "settings": {k: data_settings.get(k) for k in TOKEN_SHAPING_KEYS},
        "dtype": dtype,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


class ReferenceLogpStore:
    """One cache entry: `part-<rank>.pt` files of {pair key: (chosen, rejected)} and a `complete` mark."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def complete(self) -> bool:
        return (self.directory / "complete").exists()

    def write_part(self, rank: int, scores: dict[str, tuple[float, float]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_save(scores, self.directory / f"part-{rank}.pt")

    def mark_complete(self, parts: int) -> None:
        _atomic_write_text(self.directory / "complete", json.dumps({"parts": parts}))

    def read(self) -> dict[str, tuple[float, float]]:
        scores: dict[str, tuple[float, float]] = {}
        for part in sorted(self.directory.glob("part-*.pt")):
            scores.update(torch.load(part, weights_only=True))
        return scores


def _atomic_save(obj: Any, target: Path) -> None:
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    torch.save(obj, staging)
    os.replace(staging, target)


def _atomic_write_text(target: Path, text: str) -> None:
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    staging.write_text(text)
    os.replace(staging, target)


class ReferenceLogpCache(Callback):
    """The reference cache as a source of reference log-probs (lit_prefopt.reference.source).

    The module chooses its reference source in `setup`, before it loads any model; when the
    criterion needs a reference and the data carries none, it asks this callback, which reads
    the entry (computing it first when missing) and answers with the stored scores. So no
    reference model is held for training, and the module's settings stay the module's.
    """

    def __init__(self, cache_dir: str, enabled: bool = True) -> None:
        self.cache_dir = Path(cache_dir)
        self.enabled = enabled
        self.source: CachedScores | None = None
        self.entry: Path | None = None

    def provide_scores(self, trainer: Trainer, module: LightningModule) -> CachedScores:
        """The cached scores of the datamodule's pairs (one source per callback: validate, then fit)."""
        if self.source is None:
            self.source = CachedScores(self._load_or_compute(trainer, module), self.entry)
        return self.source

    def _load_or_compute(self, trainer: Trainer, module: LightningModule) -> dict[str, tuple[float, float]]:
        # The data as the datamodule reads it (not the run config, which a Python-built module lacks).
        datamodule = trainer.datamodule
        files = [*datamodule.train_files, *(datamodule.val_files or [])]
        memo_path = self.cache_dir / "reference_logps" / "digests.json"
        memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
        live = module.live_reference()
        if live.directory is None:
            raise ValueError("reference_cache needs a reference given as a checkpoint directory, not as a loaded model")
        dtype = live.dtype(trainer.precision)
        key = None
        if trainer.is_global_zero:
            key = cache_key(live.directory, module.tokenizer, files, vars(datamodule.settings), dtype, memo)
        key = trainer.strategy.broadcast(key)
        self.entry = self.cache_dir / "reference_logps" / key
        store = ReferenceLogpStore(self.entry)
        if not store.complete:
            log.info("reference log-prob cache miss: computing %s", self.entry)
            live.configure(module)  # sharded like the policy under FSDP, in `dtype`
            scores = {}
            for loader in _loaders(trainer, bool(datamodule.val_files)):
                scores.update(score_pairs(live, loader, trainer.strategy.root_device))
            del live
            store.write_part(trainer.global_rank, scores)
            trainer.strategy.barrier("reference_cache")
            if trainer.is_global_zero:
                store.mark_complete(trainer.world_size)
                memo_path.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write_text(memo_path, json.dumps(memo))
            trainer.strategy.barrier("reference_cache_complete")
        else:
            log.info("reference log-prob cache hit: %s", self.entry)
        return store.read()


def score_pairs(
    reference: LiveReference, loader: Iterable[PreferenceBatch], device: torch.device
) -> dict[str, tuple[float, float]]:
    """{pair key: (summed chosen, summed rejected reference log-probs)} over one pass of `loader`.

    Under FSDP every rank must run the same number of forwards (each one all-gathers): the
    loaders give every rank the same number of batches (padding batches where a rank's share is
    short), so each rank's full pass keeps the ranks in lockstep. Padding pairs (weight 0) are
    scored with the rest and left out of the entry.
    """
    scores = {}
    for batch in loader:
        batch = move_data_to_device(batch, device)
        chosen, rejected = reference.logps(batch)
        for key, weight, c, r in zip(pair_keys(batch), batch.pair_weights.tolist(), chosen.tolist(), rejected.tolist()):
            if weight > 0:
                scores[key] = (c, r)
    return scores


def _loaders(trainer: Trainer, with_validation: bool) -> list[Iterable[PreferenceBatch]]:
    """One pass over this rank's shard of the training pairs, and of the validation pairs."""
    datamodule = trainer.datamodule
    return [datamodule.train_dataloader(), *([datamodule.val_dataloader()] if with_validation else [])]
