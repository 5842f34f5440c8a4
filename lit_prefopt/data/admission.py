"""One line of a data file into the batch plan: parsed, tokenized, and within `data.max_seq_len`.

The plan table (`plan_table.py`) and the stream (`dataset.py`) both admit lines by this one rule,
so a pair that the table measured on one rank is the pair that another rank collates.
"""

from __future__ import annotations

import logging

from lit_prefopt.data.reader import RawLine
from lit_prefopt.data.records import BadRecord, parse_record
from lit_prefopt.data.tokenize import PairTokenizer, TokenizedPair, fit_length

log = logging.getLogger(__name__)


def admit(line: RawLine, tokenizer: PairTokenizer, max_seq_len: int, truncation: str) -> TokenizedPair | None:
    """The line's pair within `max_seq_len`, or None when the over-length policy drops it.

    Raises `BadRecord` (naming `file:line`) for a line that is no valid record, or that the chat
    template refuses.
    """
    if line.problem is not None:
        raise BadRecord(line.where, line.problem)
    pair = tokenizer(parse_record(line.data, line.where))
    if pair.length <= max_seq_len:
        return pair
    if truncation == "drop":
        return None
    if pair.reference_chosen is not None:
        # Its reference scores were summed over the whole completion given the whole prompt;
        # cut, they would no longer match the tokens scored. Dropped (and counted) instead.
        log.warning("%s: over data.max_seq_len=%d with reference scores: dropped, not truncated", line.where, max_seq_len)
        return None
    return fit_length(pair, max_seq_len, tokenizer.bos)
