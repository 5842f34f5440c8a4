"""A weighted mixture of files, declared by a manifest in a data directory.

`manifest.json` (or `manifest.yaml`) in a directory given as `data.train_files`:

    {"files": [{"path": "helpful.jsonl", "weight": 3}, {"path": "harmless.jsonl.gz", "weight": 1}],
     "epoch_size": 100000}

Paths are relative to the manifest. An epoch is `epoch_size` draws (default: the records of all
listed files together); each draw picks a file with probability proportional to its weight and
takes that file's next line, starting the file over when it runs out. A file continues in the
next epoch where the last one left it, so a file drawn fewer times per epoch than it has lines
is still read through, epoch after epoch. So the weights are the expected proportions of each
file in every epoch, whatever the file sizes (a small file with a large weight is upsampled, and
then repeats within an epoch, by design). The draws come from the seed and the epoch number (a
file's starting line from the draws of the epochs before), so they are the same on every rank
and every run, and a resumed run continues them exactly.
"""

from __future__ import annotations

import itertools
import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from lit_prefopt.data.reader import RawLine, count_records, read_lines

MANIFEST_NAMES = ("manifest.json", "manifest.yaml", "manifest.yml")


@dataclass(frozen=True)
class Mixture:
    """Files with sampling weights, and the number of draws per epoch (None: all their records)."""

    files: tuple[Path, ...]
    weights: tuple[float, ...]
    epoch_size: int | None = None

    def draws_per_epoch(self) -> int:
        if self.epoch_size is not None:
            return self.epoch_size
        return sum(count_records(path) for path in self.files)

    def lines(self, seed: int, epoch: int, draws: int) -> Iterator[tuple[int, int, RawLine]]:
        """The epoch's `draws` lines, sampled by weight, reproducibly from (seed, epoch), each as
        (index of its file, its position among that file's lines, the line)."""
        earlier = self._drawn_before(seed, epoch, draws)
        readers = [_cycle(path, start=earlier[index]) for index, path in enumerate(self.files)]
        for index in self._choices(seed, epoch, draws):
            yield index, *next(readers[index])

    def _choices(self, seed: int, epoch: int, draws: int) -> list[int]:
        """Which file each of the epoch's draws takes its line from."""
        return random.Random(f"mixture/{seed}/{epoch}").choices(range(len(self.files)), weights=self.weights, k=draws)

    def _drawn_before(self, seed: int, epoch: int, draws: int) -> Counter[int]:
        """Lines each file gave in the epochs before `epoch`: running totals kept per process, so
        each epoch's choices are replayed once, not once per later epoch."""
        totals = _DRAWN_BEFORE.setdefault((self, seed, draws), [Counter()])
        while len(totals) <= epoch:
            totals.append(totals[-1] + Counter(self._choices(seed, len(totals) - 1, draws)))
        return totals[epoch]


_DRAWN_BEFORE: dict[tuple[Mixture, int, int], list[Counter[int]]] = {}
"""Per (mixture, seed, draws per epoch): how many lines each file gave before epoch 0, 1, ..."""


def load_manifest(manifest: Path, key: str) -> Mixture:
    """Read and check a manifest; errors name the config key and the manifest file."""
    text = manifest.read_text(encoding="utf-8")
    try:
        spec = json.loads(text) if manifest.suffix == ".json" else OmegaConf.to_container(OmegaConf.create(text))
    except Exception as error:  # noqa: BLE001 - any parse error is a bad manifest
        raise ValueError(f"{key}: {manifest} is not valid {manifest.suffix[1:].upper()}: {error}") from None
    entries = spec.get("files") if isinstance(spec, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{key}: {manifest} needs a non-empty 'files' list of {{path, weight}} entries")
    files, weights = [], []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise ValueError(f"{key}: {manifest}: each entry of 'files' needs a 'path', got {entry!r}")
        weight = entry.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
            raise ValueError(f"{key}: {manifest}: weight of {entry['path']} must be a positive number, got {weight!r}")
        path = manifest.parent / entry["path"]
        if not path.is_file():
            raise FileNotFoundError(f"{key}: {path} (listed in {manifest}) does not exist")
        files.append(path)
        weights.append(float(weight))
    epoch_size = spec.get("epoch_size")
    if epoch_size is not None and (isinstance(epoch_size, bool) or not isinstance(epoch_size, int) or epoch_size < 1):
        raise ValueError(f"{key}: {manifest}: epoch_size must be a positive integer, got {epoch_size!r}")
    return Mixture(tuple(files), tuple(weights), epoch_size)


def _cycle(path: Path, start: int = 0) -> Iterator[tuple[int, RawLine]]:
    """A file's lines over and over from the `start`-th (counted over the cycles), each with its
    position in the file (an empty file yields its problem once per cycle)."""
    skip = start % sum(1 for _ in read_lines(path)) if start else 0
    while True:
        yield from itertools.islice(enumerate(read_lines(path)), skip, None)
        skip = 0
