"""The data pipeline alone: validation-scan cost and tokenized pairs per second.

    python -m benchmarks.data_pipeline [--pairs 1000000] [--batches 150] [--pairs-file FILE]

Writes N synthetic pairs (lit_prefopt.data.synthetic, ~150 bytes each) to a temporary file,
times `PreferenceDataModule.scan()` over them (the check that runs before the model loads), then
times the training loader alone (read, shuffle, tokenize with the tiny model's tokenizer,
batch, collate) with 0 and 2 dataloader workers on real HH-RLHF pairs (--pairs-file, default the
shipped data/hh_harmless/train.jsonl). Results go to
benchmarks/results/data_pipeline.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

from benchmarks.fixture import DEFAULT_PAIRS
from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.data.synthetic import make_pair
from lit_prefopt.models.tiny import TinyLlama

RESULTS = Path(__file__).resolve().parent / "results"


def write_synthetic(path: Path, count: int) -> int:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as out:
        for index in range(count):
            out.write(json.dumps(make_pair(rng, index)) + "\n")
    return path.stat().st_size


def time_scan(path: Path) -> dict:
    module = PreferenceDataModule(train_files=[str(path)])
    started = time.perf_counter()
    scan = module.scan()
    seconds = time.perf_counter() - started
    return {"records": scan.num_train_records, "seconds": round(seconds, 2),
            "records_per_s": round(scan.num_train_records / seconds)}


def time_loader(tokenizer, files: list[str], workers: int, batches: int, batch_size: int) -> dict:
    module = PreferenceDataModule(train_files=files, batch_size=batch_size, max_seq_len=512, num_workers=workers,
                                  tokenizer=tokenizer, shuffle_buffer=1000)
    loader = iter(module.train_dataloader())
    next(loader)  # worker start-up is not throughput
    started = time.perf_counter()
    pairs = 0
    for _ in range(batches):
        try:
            pairs += next(loader).num_real_pairs
        except StopIteration:
            loader = iter(module.train_dataloader())
    seconds = time.perf_counter() - started
    return {"workers": workers, "pairs": pairs, "seconds": round(seconds, 2), "pairs_per_s": round(pairs / seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000, help="synthetic pairs to scan")
    parser.add_argument("--batches", type=int, default=150, help="loader batches to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pairs-file", type=Path, default=DEFAULT_PAIRS, help="JSONL pairs the loader is timed on")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        size = write_synthetic(path, args.pairs)
        scan = {**time_scan(path), "megabytes": round(size / 1e6, 1)}
    checkpoint = TinyLlama(vocab_size=8192)
    checkpoint.prepare()
    tokenizer = checkpoint.load_tokenizer()
    loaders = [time_loader(tokenizer, [str(args.pairs_file)], w, args.batches, args.batch_size) for w in (0, 2)]
    result = {"scan": scan, "loader_hh_harmless": loaders, "cpus": os.cpu_count(), "load_average": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_pipeline.json").write_text(json.dumps(result, indent=2))
    print(f"validation scan: {scan['records']:,} records ({scan['megabytes']} MB) in {scan['seconds']} s "
          f"= {scan['records_per_s']:,} records/s")
    for row in loaders:
        print(f"loader, {row['workers']} workers: {row['pairs_per_s']:,} pairs/s (tokenized, batched, collated)")


if __name__ == "__main__":
    main()
