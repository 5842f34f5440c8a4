"""The reference cache filled under FSDP on 2 CPU processes holds the live reference's scores.

Under FSDP the filling pass runs the sharded reference (each forward all-gathers), so the ranks
must run the same number of forwards; a mismatch would hang, and a wrong shard would give other
numbers. The entry is compared with the one a single process fills with an unsharded reference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from lit_prefopt.callbacks.reference_cache import ReferenceLogpStore
from tests.entry_process import run_lit_prefopt

COMMON = ("trainer.max_steps=1", "data.shuffle=false", "validate_before_training=false", "export_hf=false",
          "criterion=dpo", "reference_cache=true", "data.batch_size=2")


def _entry(cache_dir: Path) -> Path:
    (entry,) = [p for p in (cache_dir / "reference_logps").iterdir() if p.is_dir()]
    return entry


@pytest.mark.slow
def test_fsdp_fill_equals_the_single_process_fill(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    run_lit_prefopt("run_name=fsdp", "strategy=fsdp", "trainer.devices=2", f"cache_dir={cache_dir}", *COMMON,
                    cwd=tmp_path)
    sharded_entry = _entry(cache_dir)
    assert json.loads((sharded_entry / "complete").read_text()) == {"parts": 2}
    sharded = ReferenceLogpStore(sharded_entry).read()
    shutil.rmtree(cache_dir / "reference_logps")  # same tiny model files, so the same key

    run_lit_prefopt("run_name=single", f"cache_dir={cache_dir}", *COMMON, cwd=tmp_path)
    single_entry = _entry(cache_dir)
    assert single_entry.name == sharded_entry.name
    single = ReferenceLogpStore(single_entry).read()

    assert len(single) > 4 and sorted(sharded) == sorted(single), "every pair of train and val scored once"
    keys = sorted(single)
    torch.testing.assert_close(torch.tensor([sharded[k] for k in keys]), torch.tensor([single[k] for k in keys]),
                               atol=1e-4, rtol=1e-5)
