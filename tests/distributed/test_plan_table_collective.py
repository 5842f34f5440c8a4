"""The plan table's collectives on 2 gloo ranks: the shared table, and failures that stop every rank alike.

Every rank must make the same collectives whatever its own share did, so a rank whose tokenizer
crashes, or a bad record under `on_bad_record=error`, stops both ranks with one message instead
of leaving one waiting in a collective the other never reaches. A 2-process training run then
shows the data module stopping both ranks in `setup` at the bad record's `file:line`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_prefopt.data.plan_table import build_share, merge_shares, share_plan_table
from lit_prefopt.data.tokenize import PairTokenizer
from lit_prefopt.models.tiny import build_tokenizer, sample_texts
from lit_prefopt.paths import sample_data_path
from tests.data.pairs import pair
from tests.distributed.test_strategies import COMMON
from tests.entry_process import entry_env
from tests.gloo import gloo_group, rendezvous, spawn_ranks

BAD_LINE = "{not json"


class FailingTokenizer(PairTokenizer):
    """The real pair tokenizer, except that it crashes on the record with id "3" (rank 1 owns line 3)."""

    def __call__(self, record):
        if record.id == "3":
            raise RuntimeError("tokenizer crashed")
        return super().__call__(record)


def _share(rank: int, rendezvous_file: str, tokenizer, out_dir: str) -> None:
    files = [Path(out_dir, "train.jsonl")]
    with gloo_group(rank, rendezvous_file):
        table = share_plan_table(files, "data.train_files", PairTokenizer(tokenizer), 24, "truncate", torch.device("cpu"))
        outcome = [table.codes.tolist(), str(table.first_bad_record())]
        try:
            share_plan_table(files, "data.train_files", FailingTokenizer(tokenizer), 24, "truncate", torch.device("cpu"))
            outcome.append("no error")
        except RuntimeError as error:
            outcome.append(str(error))
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(outcome))


@pytest.mark.slow
def test_ranks_share_one_table_and_stop_alike(tmp_path: Path) -> None:
    tokenizer = build_tokenizer(sample_texts([sample_data_path("train.jsonl")]), vocab_size=512)
    lines = [pair(0), pair(1, src="a much longer question " * 20), BAD_LINE, pair(3), pair(4)]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    spawn_ranks(_share, (rendezvous(tmp_path), tokenizer, str(tmp_path)))

    tok = PairTokenizer(tokenizer)
    expected = merge_shares([build_share([path], tok, 24, "truncate", rank, 2) for rank in range(2)], "data.train_files")
    assert np.all(expected.codes > 0)
    for rank in range(2):
        codes, bad, failure = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert codes == expected.codes.tolist()
        assert bad.startswith(f"{path}:3: invalid JSON")
        assert failure == "data.train_files: building the data plan table failed on rank 1: RuntimeError: tokenizer crashed"


@pytest.mark.slow
def test_a_bad_record_stops_both_ranks_of_a_run_in_setup(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join([json.dumps(pair(0)), json.dumps(pair(1)), BAD_LINE, json.dumps(pair(3))]) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "lit_prefopt", "run_name=bad", "strategy=ddp", "trainer.devices=2", f"data.train_files=[{path}]",
         "data.validate=false", "data.on_bad_record=error", "data.batch_size=1", "export_hf=false", *COMMON],
        cwd=tmp_path, env=entry_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    # Both ranks' tracebacks: the same message, raised in setup (before any batch or step).
    assert output.count(f"BadRecord: {path}:3: invalid JSON") == 2, output[-4000:]
    assert output.count("in _share_table") == 2
