"""Reference log-prob cache: one reference pass per (reference, tokenizer, data, truncation).

A DPO sweep of 20 betas, a resume, a second epoch: each needs the same reference log-probs of
the same pairs. The first run computes them in one pass and stores them under `cache_dir`
(never beside the data); every later run with the same inputs reads them and loads no
reference model at all. The key is a hash of everything that changes the numbers: the
reference checkpoint's files, the tokenizer, the data files' bytes and the data settings that
shape the tokens (`max_seq_len`, truncation, ...), and the dtype the reference runs in
(`model.reference_dtype`). Change any of them and the key changes, so a stale entry is never read.
Rank 0 alone hashes (the other ranks take its key).

Under DDP each rank scores its own shard of the data into its own part file; after a barrier
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
from lit_prefopt.kernels.logprobs import sequence_logprobs

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
    """Fills every batch's `reference_chosen/rejected` from the cache, computing it if missing.

    It acts in `setup`, before the module loads its models: with the cache in hand the module
    is told the reference scores come with the data, so no reference model is ever loaded for
    training. A pair missing from the entry is an error, never a silent live fallback.
    """

    def __init__(self, cache_dir: str, enabled: bool = True) -> None:
        self.cache_dir = Path(cache_dir)
        self.enabled = enabled
        self.scores: dict[str, tuple[float, float]] | None = None
        self.entry: Path | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if not self.enabled or not pl_module.criterion.needs_reference or pl_module.reference_from_data:
            return
        if self.scores is None:
            self.scores = self._load_or_compute(trainer, pl_module)
        pl_module.reference_from_data = True

    def _load_or_compute(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, tuple[float, float]]:
        config = pl_module.config
        data = config.get("data", {})
        files = [*_as_list(data.get("train_files")), *_as_list(data.get("val_files"))]
        memo_path = self.cache_dir / "reference_logps" / "digests.json"
        memo = json.loads(memo_path.read_text()) if memo_path.exists() else {}
        checkpoint = pl_module.checkpoint
        dtype = checkpoint.reference_dtype(trainer.precision)
        key = None
        if trainer.is_global_zero:
            key = cache_key(checkpoint.reference_path, checkpoint.load_tokenizer(), files, data, dtype, memo)
        key = trainer.strategy.broadcast(key)
        self.entry = self.cache_dir / "reference_logps" / key
        store = ReferenceLogpStore(self.entry)
        if not store.complete:
            log.info("reference log-prob cache miss: computing %s", self.entry)
            reference = checkpoint.load_reference(dtype=dtype).to(pl_module.device)
            scores = {}
            for loader in _loaders(trainer, bool(data.get("val_files"))):
                scores.update(score_pairs(reference, loader, pl_module.device, checkpoint.chunked_logprobs))
            del reference
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

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: PreferenceBatch, batch_idx: int) -> None:
        self._fill(batch)

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: PreferenceBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._fill(batch)

    def _fill(self, batch: PreferenceBatch) -> None:
        if self.scores is None or batch.reference_chosen is not None:
            return
        keys, weights = pair_keys(batch), batch.pair_weights.tolist()
        missing = [i for i, (k, w) in enumerate(zip(keys, weights)) if w > 0 and k not in self.scores]
        if missing:
            raise KeyError(f"{len(missing)} pairs of this batch are not in the reference cache {self.entry}")
        values = torch.tensor([self.scores.get(k, (0.0, 0.0)) for k in keys], device=batch.pair_weights.device)
        batch.reference_chosen, batch.reference_rejected = values[:, 0], values[:, 1]


@torch.no_grad()
def score_pairs(reference: torch.nn.Module, loader: Iterable[PreferenceBatch], device: torch.device, chunk_size: int = 0) -> dict[str, tuple[float, float]]:
    """{pair key: (summed chosen, summed rejected reference log-probs)} over one pass of `loader`."""
    scores = {}
    for batch in loader:
        batch = move_data_to_device(batch, device)
        sums, _ = sequence_logprobs(reference, batch, chunk_size)
        chosen, rejected = sums.chunk(2)
        for key, weight, c, r in zip(pair_keys(batch), batch.pair_weights.tolist(), chosen.tolist(), rejected.tolist()):
            if weight > 0:
                scores[key] = (c, r)
    return scores


def pair_keys(batch: PreferenceBatch) -> list[str]:
    """A digest per pair of its chosen and rejected rows' tokens (padding excluded)."""
    ids, lengths = batch.input_ids.cpu(), batch.attention_mask.sum(dim=1).tolist()
    pairs = batch.num_pairs
    keys = []
    for p in range(pairs):
        digest = hashlib.blake2b(digest_size=16)
        digest.update(ids[p, : lengths[p]].numpy().tobytes())
        digest.update(b"|")
        digest.update(ids[pairs + p, : lengths[pairs + p]].numpy().tobytes())
        keys.append(digest.hexdigest())
    return keys


def _loaders(trainer: Trainer, with_validation: bool) -> list[Iterable[PreferenceBatch]]:
    """One pass over this rank's shard of the training pairs, and of the validation pairs."""
    datamodule = trainer.datamodule
    return [datamodule.train_dataloader(), *([datamodule.val_dataloader()] if with_validation else [])]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
