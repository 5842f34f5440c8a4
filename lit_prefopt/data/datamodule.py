"""`PreferenceDataModule`: the `data.*` config, checked up front, turned into resumable loaders.

The order of use in `train()`: instantiate (config values are checked here, naming the key),
`set_tokenizer`, `scan()` (files checked before any model loads), then Lightning calls
`setup` (with more than one rank it builds the streams' plan tables there, every rank taking
part) and the dataloader methods. From Python, a plain `Trainer.fit(module, datamodule=dm)`
works too: `setup` takes the module's tokenizer unless one was given. The stream itself, its
sharding and its resume rule are in `dataset.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch.distributed as dist
from lightning.pytorch import LightningDataModule

from lit_prefopt.config_values import is_int, require_number
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.collate import with_shared_prompts
from lit_prefopt.data.dataset import PreferenceStream, StreamSettings
from lit_prefopt.data.loader import LightningStatefulLoader
from lit_prefopt.data.plan_table import PlanTable, share_plan_table
from lit_prefopt.data.scan import DataScan, scan_sources
from lit_prefopt.data.sources import DataSources, resolve_sources
from lit_prefopt.data.tokenize import PairTokenizer

log = logging.getLogger(__name__)


class PreferenceDataModule(LightningDataModule):
    """Streams JSONL preference pairs (docs/ARCHITECTURE.md#data-records-and-tokenization) as `PreferenceBatch`es.

    `batch_size` pairs per batch, or, when `max_num_tokens` is set, length-bucketed batches of at
    most that many padded tokens (then `batch_size` is not used). `group_by_length` makes the
    `batch_size` batches of pairs of similar length (sorted within pools of `bucket_pool` pairs,
    the batches in a seeded random order), which pads far less; the pairs per batch, and so the
    optimizer step, are unchanged. `share_prompt` lays each pair out
    as one row [prompt | chosen | rejected]; `pack` then packs a batch's pairs into rows of
    `pack_length` tokens (default 2 * `max_seq_len`). Packing never decides which pairs form a
    batch: both keys keep their unpacked meaning (pairs per batch; the padded cost `2 * pairs *
    longest row` of the unpacked batch), so switching `pack` changes the layout and the speed, not
    the batches, the losses or a resumed run's data position. The packed batch then has as many
    rows as its pairs need and never more tokens than its padded cost. `truncation` is `truncate` or
    `drop` for pairs over `max_seq_len`; `on_bad_record` is `error` or `skip`; `validate=False`
    skips the scan, and a bad record then stops the run when it is read. The stream's position
    is saved in Lightning checkpoints (`loader.py`: torchdata's `StatefulDataLoader`, corrected
    for Lightning's one-batch prefetch).
    """

    def __init__(
        self,
        train_files: str | Sequence[str],
        val_files: str | Sequence[str] | None = None,
        batch_size: int | None = 8,
        max_num_tokens: int | None = None,
        max_seq_len: int = 1024,
        truncation: str = "truncate",
        on_bad_record: str = "error",
        validate: bool = True,
        num_workers: int = 0,
        shuffle: bool = True,
        shuffle_buffer: int = 10_000,
        bucket_pool: int = 1_000,
        group_by_length: bool = True,
        seed: int = 0,
        mask_source_tokens: bool = True,
        max_dropped_fraction: float = 0.5,
        share_prompt: bool = True,
        pack: bool = False,
        pack_length: int | None = None,
        tokenizer: Any = None,
    ) -> None:
        super().__init__()
        _check_int("data.max_seq_len", max_seq_len, minimum=2)
        if max_num_tokens is None:
            _check_int("data.batch_size", batch_size, minimum=1, what="a positive integer")
        else:
            if batch_size is not None:
                _check_int("data.batch_size", batch_size, minimum=1, what="a positive integer or null")
            _check_int("data.max_num_tokens", max_num_tokens, minimum=1, what="a positive integer or null")
            if max_num_tokens < 2 * max_seq_len:
                raise ValueError(
                    f"data.max_num_tokens ({max_num_tokens}) must be at least 2 * data.max_seq_len "
                    f"(2 * {max_seq_len} = {2 * max_seq_len}): both rows of the longest allowed pair must fit one batch"
                )
        _check_choice("data.truncation", truncation, ("truncate", "drop"))
        _check_choice("data.on_bad_record", on_bad_record, ("error", "skip"))
        _check_bool("data.validate", validate)
        _check_bool("data.shuffle", shuffle)
        _check_bool("data.group_by_length", group_by_length)
        _check_bool("data.mask_source_tokens", mask_source_tokens)
        _check_bool("data.share_prompt", share_prompt)
        _check_bool("data.pack", pack)
        if pack and not share_prompt:
            raise ValueError("data.pack=true packs shared-prompt rows: it needs data.share_prompt=true")
        if pack_length is not None:
            if not pack:
                raise ValueError("data.pack_length is set but data.pack=false: set data.pack=true or data.pack_length=null")
            _check_int("data.pack_length", pack_length, minimum=2 * max_seq_len,
                       what=f"null or an integer >= 2 * data.max_seq_len = {2 * max_seq_len} (every pair must fit a row)")
            if max_num_tokens is not None and pack_length > max_num_tokens:
                raise ValueError(
                    f"data.pack_length ({pack_length}) exceeds data.max_num_tokens ({max_num_tokens}): a batch's pairs "
                    f"cost at most max_num_tokens padded tokens and fewer packed, so no row can be that long; "
                    f"set data.pack_length<={max_num_tokens} or null"
                )
        _check_int("data.num_workers", num_workers, minimum=0, what="a non-negative integer")
        _check_int("data.shuffle_buffer", shuffle_buffer, minimum=1, what="a positive integer")
        _check_int("data.bucket_pool", bucket_pool, minimum=1, what="a positive integer")
        _check_int("data.seed", seed, minimum=None, what="an integer")
        require_number("data.max_dropped_fraction", max_dropped_fraction, 0.0, 1.0)
        if not train_files:
            raise ValueError("data.train_files is empty: give at least one file or directory")
        self.train_files = _as_list(train_files)
        self.val_files = _as_list(val_files) if val_files else None
        self.validate = validate
        self.num_workers = num_workers
        self.share_prompt = share_prompt
        # A pair's shared row is at most 2 * max_seq_len tokens, so every pair fits the default.
        self.pack_length = (pack_length or 2 * max_seq_len) if pack else None
        self.settings = StreamSettings(
            batch_size=batch_size,
            max_num_tokens=max_num_tokens,
            max_seq_len=max_seq_len,
            truncation=truncation,
            on_bad_record=on_bad_record,
            shuffle=shuffle,
            shuffle_buffer=shuffle_buffer,
            bucket_pool=bucket_pool,
            group_by_length=group_by_length,
            share_prompt=share_prompt,
            seed=seed,
            mask_source_tokens=mask_source_tokens,
            max_dropped_fraction=float(max_dropped_fraction),
        )
        self.tokenizer: PairTokenizer | None = None
        # Per config key (`data.train_files`, `data.val_files`): the plan table of a multi-rank run.
        self.tables: dict[str, PlanTable] = {}
        if tokenizer is not None:
            self.set_tokenizer(tokenizer)

    def set_tokenizer(self, tokenizer: Any) -> None:
        """The model's tokenizer; needed before any dataloader is made (not by `scan`)."""
        self.tokenizer = PairTokenizer(tokenizer)

    def setup(self, stage: str) -> None:
        """Take the module's tokenizer unless one was given, then, with more than one rank, build the
        plan tables of the streams this stage reads (`plan_table.py`; the process group exists by now)."""
        if self.tokenizer is None:
            module = self.trainer.lightning_module if self.trainer is not None else None
            tokenizer = getattr(module, "tokenizer", None)
            if tokenizer is None:
                raise RuntimeError(
                    "PreferenceDataModule needs a tokenizer: pass tokenizer=, or train a module that has one"
                )
            self.set_tokenizer(tokenizer)
        self.tables = {}
        _, world_size = self._rank()
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            train, val = self._sources()
            for sources in [train if stage == "fit" else None, val if stage in ("fit", "validate") else None]:
                if sources is not None:
                    self.tables[sources.key] = self._share_table(sources)

    def _share_table(self, sources: DataSources) -> PlanTable:
        """Every rank's copy of the table; a bad record under `on_bad_record=error` stops every rank here, alike."""
        settings = self.settings
        table = share_plan_table(sources.files, sources.key, self._tokenizer(), settings.max_seq_len,
                                 settings.truncation, self.trainer.strategy.root_device)
        bad = table.first_bad_record()
        if bad is not None and settings.on_bad_record == "error":
            raise bad
        return table

    def scan(self) -> DataScan:
        """Check the files exist and, unless `data.validate=false`, every record of them (see `scan.py`)."""
        train, val = self._sources()
        if not self.validate:
            return DataScan(has_reference_scores=False)
        scan = scan_sources(train, val, self.settings.on_bad_record)
        if scan.has_reference_scores and not self.settings.mask_source_tokens:
            log.warning("data.mask_source_tokens=false scores prompt tokens too, which reference_score_* do not "
                        "cover: the scores are ignored and a reference model computes them")
            scan.has_reference_scores = False
        log.info(
            "data scan: %d train and %s val records, %d bad records skipped, reference scores in every record: %s (%.1f s)",
            scan.num_train_records, scan.num_val_records, scan.num_skipped, scan.has_reference_scores, scan.seconds,
        )
        return scan

    def train_dataloader(self) -> LightningStatefulLoader:
        train, _ = self._sources()
        return self._loader(PreferenceStream(train, self._tokenizer(), self.settings, *self._rank(), self.tables.get(train.key)))

    def val_dataloader(self) -> LightningStatefulLoader | list:
        _, val = self._sources()
        if val is None:
            return []
        settings = StreamSettings(**{**self.settings.__dict__, "shuffle": False, "same_every_epoch": True})
        return self._loader(PreferenceStream(val, self._tokenizer(), settings, *self._rank(), self.tables.get(val.key)))

    def _loader(self, stream: PreferenceStream) -> LightningStatefulLoader:
        # Persistent workers keep their stream object, and with it the epoch count, across epochs.
        return LightningStatefulLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=partial(with_shared_prompts, pack_length=self.pack_length) if self.share_prompt else _as_is,
        )

    def _sources(self) -> tuple[DataSources, DataSources | None]:
        train = resolve_sources(self.train_files, "data.train_files")
        val = resolve_sources(self.val_files, "data.val_files") if self.val_files else None
        return train, val

    def _tokenizer(self) -> PairTokenizer:
        if self.tokenizer is None:
            raise RuntimeError("PreferenceDataModule needs a tokenizer: call set_tokenizer(tokenizer) first")
        return self.tokenizer

    def _rank(self) -> tuple[int, int]:
        """(data-parallel rank, world size) from the trainer; (0, 1) without one."""
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


def _as_is(batch: PreferenceBatch) -> PreferenceBatch:
    """The stream yields whole batches: nothing to collate."""
    return batch


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [str(value)] if isinstance(value, str) else [str(item) for item in value]


def _check_int(key: str, value: Any, minimum: int | None, what: str = "an integer >= 2") -> None:
    if not is_int(value) or (minimum is not None and value < minimum):
        raise ValueError(f"{key} must be {what}, got {value!r}")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key} must be {' or '.join(repr(c) for c in choices)}, got {value!r}")


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
