"""A stable name per preference pair, so stored reference scores find their pair again."""

from __future__ import annotations

import hashlib

from lit_prefopt.data.batch import PreferenceBatch


def pair_keys(batch: PreferenceBatch) -> list[str]:
    """A digest per pair of its chosen and rejected rows' tokens (padding excluded): any order,
    sharding or batching of the same data gives a pair the same key."""
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
