"""Read an offline W&B run back from its `run-<id>.wandb` file, for tests.

wandb 0.31 no longer ships a Python reader for its transaction log, so this decodes the
documented record framing (leveldb-log style: 32 KiB blocks of checksum, length, type, data)
into the SDK's own protobuf `Record`s. That is what `wandb sync` would upload, so a test that
reads it sees exactly what the dashboard would show.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto.wandb_internal_pb2 import Record

_BLOCK = 32 * 1024
_HEADER = 7  # ":W&B", a 2-byte magic and a version byte; every record header is also 7 bytes
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Record]:
    """Every complete record of a `.wandb` file, in write order."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B transaction log")
    records, pending, pos = [], b"", _HEADER
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:  # the writer pads the tail of a block
            pos += left_in_block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if pos + _HEADER + length > len(data):  # the writer is still writing this record
            break
        chunk = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == _FULL:
            records.append(Record.FromString(chunk))
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            records.append(Record.FromString(pending + chunk))
    return records


@dataclass
class OfflineRun:
    """What an offline run holds: its settings, config, history rows and media files."""

    directory: Path
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    def metric(self, name: str) -> list[Any]:
        return [row[name] for row in self.history if name in row]

    def tables(self, key: str) -> list[dict[str, Any]]:
        """The `wandb.Table`s logged under `key`, oldest first, as {"columns": ..., "data": ...}."""
        return [json.loads((self.directory / "files" / path).read_text()) for path in self.metric(f"{key}/path")]


def read_offline_run(directory: Path, timeout_s: float = 60.0) -> OfflineRun:
    """Decode `directory/run-<id>.wandb` (an `offline-run-*` directory) once it is complete.

    W&B's service process writes the file in the background and may still be flushing after
    `wandb.finish()` returns, so this waits for the run's final `exit` record.
    """
    (log_file,) = directory.glob("run-*.wandb")
    deadline = time.monotonic() + timeout_s
    records = read_records(log_file) if log_file.stat().st_size else []
    while not any(r.WhichOneof("record_type") == "exit" for r in records):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{log_file} has no exit record after {timeout_s} s: the run was not finished")
        time.sleep(0.2)
        records = read_records(log_file) if log_file.stat().st_size else []
    run = OfflineRun(directory)
    for record in records:
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.group, run.job_type, run.tags = record.run.run_group, record.run.job_type, list(record.run.tags)
            _apply_config(run.config, record.run.config.update)
        elif kind == "config":
            _apply_config(run.config, record.config.update)
        elif kind == "history":
            run.history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return run


def _apply_config(config: dict[str, Any], items) -> None:
    for item in items:
        config[_key(item)] = json.loads(item.value_json)


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)
