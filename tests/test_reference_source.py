"""The reference source: chosen once in a fixed order, and what the stored-score sources answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_prefopt.callbacks.reference_cache import ReferenceLogpCache
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.criteria.simpo import SimPO
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.reference.pair_keys import pair_keys
from lit_prefopt.reference.source import (
    CachedScores,
    LiveReference,
    LoRABaseWeights,
    ScoresInData,
    choose_reference_source,
)

IDS = torch.tensor([[0, 5, 9, 33], [0, 5, 9, 40], [0, 8, 9, 34], [0, 8, 9, 41]])
MASK = torch.tensor([[0, 0, 1, 1]] * 4, dtype=torch.bool)


def _batch(**scores) -> PreferenceBatch:
    return PreferenceBatch(IDS, torch.ones_like(IDS), MASK, torch.ones(2), **scores)


def _module(criterion=None, from_data=False, lora=False) -> SimpleNamespace:
    return SimpleNamespace(criterion=criterion or DPO(), reference_from_data=from_data,
                           checkpoint=SimpleNamespace(uses_lora=lora, chunked_logprobs=0))


def _cache(tmp_path, enabled=True) -> ReferenceLogpCache:
    cache = ReferenceLogpCache(str(tmp_path), enabled)
    cache.source = CachedScores({}, "entry")  # an entry already read: no pass to run
    return cache


def test_order_data_then_cache_then_lora_then_live(tmp_path) -> None:
    cache = _cache(tmp_path)
    assert choose_reference_source(_module(SimPO()), SimpleNamespace(callbacks=[cache])) is None
    assert isinstance(choose_reference_source(_module(from_data=True), SimpleNamespace(callbacks=[cache])), ScoresInData)
    assert choose_reference_source(_module(lora=True), SimpleNamespace(callbacks=[cache])) is cache.source
    off = SimpleNamespace(callbacks=[_cache(tmp_path, enabled=False)])
    assert isinstance(choose_reference_source(_module(lora=True), off), LoRABaseWeights)
    live = choose_reference_source(_module(), off)
    assert isinstance(live, LiveReference) and live.model is None, "a live model loads in configure_model"


def test_scores_in_data_are_the_batch_scores_as_float32() -> None:
    chosen, rejected = ScoresInData().logps(_batch(reference_chosen=torch.tensor([-1.0, -2.0], dtype=torch.float64),
                                                   reference_rejected=torch.tensor([-3.0, -4.0])))
    assert chosen.dtype == torch.float32 and chosen.tolist() == [-1.0, -2.0] and rejected.tolist() == [-3.0, -4.0]
    with pytest.raises(RuntimeError, match="this batch has none"):
        ScoresInData().logps(_batch())


def test_cached_scores_are_found_by_pair_and_a_missing_pair_is_an_error() -> None:
    first, second = pair_keys(_batch())
    chosen, rejected = CachedScores({second: (-5.0, -6.0), first: (-1.5, -2.5)}, "entry").logps(_batch())
    assert chosen.tolist() == [-1.5, -5.0] and rejected.tolist() == [-2.5, -6.0]
    with pytest.raises(KeyError, match="1 pairs of this batch are not in the reference cache entry"):
        CachedScores({first: (0.0, 0.0)}, "entry").logps(_batch())
