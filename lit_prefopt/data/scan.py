"""The validation scan: read every record of the local data files once, before any model loads.

It finds bad records early (a run that would crash after an hour of model loading and training
stops in seconds instead, naming `file:line`), counts the records, and learns whether every
record carries precomputed reference scores, in which case no reference model is loaded.
Parsing only, no tokenization: its cost is one JSON parse per line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from lit_prefopt.data.reader import iter_lines
from lit_prefopt.data.records import BadRecord, DataValidationError, parse_record
from lit_prefopt.data.sources import DataSources

MAX_REPORTED = 20


@dataclass
class DataScan:
    """What the scan learned. Counts are None when the scan was skipped (`data.validate=false`)."""

    has_reference_scores: bool
    num_train_records: int | None = None
    num_val_records: int | None = None
    num_skipped: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def scan_sources(train: DataSources, val: DataSources | None, on_bad_record: str) -> DataScan:
    """Parse every line of the train and val files; raise listing the first bad records, or count them.

    With `on_bad_record="error"` any bad record raises `DataValidationError` listing the first
    few as `file:line: problem`; with "skip" they are counted (and the first few kept in
    `problems`), and only a key with no good record at all is an error.
    """
    started = time.perf_counter()
    problems: list[str] = []
    skipped = 0
    counts: dict[str, int] = {}
    all_scored = True
    for sources in (train, val):
        if sources is None:
            continue
        good = 0
        for line in iter_lines(sources.files):
            try:
                if line.problem is not None:
                    raise BadRecord(line.where, line.problem)
                record = parse_record(line.data, line.where)
            except BadRecord as error:
                skipped += 1
                if len(problems) < MAX_REPORTED:
                    problems.append(str(error))
                continue
            good += 1
            all_scored = all_scored and record.has_reference_scores
        counts[sources.key] = good
        if on_bad_record == "skip" and good == 0:
            raise DataValidationError(f"{sources.key}: no valid record in {len(sources.files)} file(s):\n" + "\n".join(problems))
    if problems and on_bad_record == "error":
        more = f"\n... and {skipped - len(problems)} more" if skipped > len(problems) else ""
        raise DataValidationError(
            f"{skipped} bad record(s) in the data files (set data.on_bad_record=skip to skip them):\n"
            + "\n".join(problems)
            + more
        )
    return DataScan(
        has_reference_scores=all_scored and sum(counts.values()) > 0,
        num_train_records=counts.get(train.key),
        num_val_records=counts.get(val.key) if val is not None else 0,
        num_skipped=skipped,
        problems=problems,
        seconds=time.perf_counter() - started,
    )
