"""The shared inputs of a benchmark: one tiny Llama checkpoint and one file of pairs.

Both systems must see exactly the same tokens, so the pairs are filtered to those that neither
system truncates (prompt + longer completion within the cap) and whose prompt+completion
tokenizes the same jointly (TRL) and separately (lit_prefopt, docs/ARCHITECTURE.md#data-records-and-tokenization). Without
that, a throughput ratio would partly measure different truncation rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.collate import collate_pairs
from lit_prefopt.data.records import PreferenceRecord
from lit_prefopt.data.tokenize import PairTokenizer
from lit_prefopt.models.tiny import save_tiny_llama

# Real HH-RLHF pairs shipped with the repository (data/hh_harmless/, MIT; see its README). The
# published results used the whole 1,791-pair conversion: pass such a file with --pairs-file.
DEFAULT_PAIRS = Path(__file__).resolve().parents[1] / "data" / "hh_harmless" / "train.jsonl"


@dataclass(frozen=True)
class ModelShape:
    """A Llama architecture; the defaults are the benchmark's ~7M-parameter model."""

    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    intermediate_size: int = 688
    vocab_size: int = 8192
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False


def read_pairs(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            yield json.loads(line)


def build_checkpoint(target: Path, shape: ModelShape, corpus: list[dict], model_vocab: int | None = None) -> Path:
    """Save a random Llama plus a BPE tokenizer trained on `corpus` under `target`.

    `model_vocab` widens the model's embedding and LM head beyond the tokenizer (the 128k
    memory configuration): the unused rows cost exactly what a real 128k vocabulary costs.
    """
    texts = (text for pair in corpus for text in (pair["src"], pair["tgt_chosen"], pair["tgt_rejected"]))
    architecture = {**shape.__dict__}
    save_tiny_llama(target, architecture, seed=0, texts=texts)
    if model_vocab is not None and model_vocab != shape.vocab_size:
        _widen_vocabulary(target, model_vocab)
    return target


def _widen_vocabulary(target: Path, vocab_size: int) -> None:
    import torch
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(target)
    torch.manual_seed(0)
    model.resize_token_embeddings(vocab_size, mean_resizing=False)
    model.save_pretrained(target, safe_serialization=True)


def collate_records(tokenizer: PreTrainedTokenizerBase, records: list[dict]) -> PreferenceBatch:
    """lit_prefopt's own tokenization and collation of `records`, in order: the padded batch its
    loader would yield for them."""
    tokenize = PairTokenizer(tokenizer)
    pairs = [tokenize(PreferenceRecord(r["src"], r["tgt_chosen"], r["tgt_rejected"], where="benchmark")) for r in records]
    return collate_pairs(pairs, tokenize.pad)


def pair_lengths(tokenizer: PreTrainedTokenizerBase, pair: dict) -> tuple[int, int, int] | None:
    """(prompt, chosen, rejected) token counts under lit_prefopt's rule (docs/ARCHITECTURE.md#data-records-and-tokenization), or None when a joint
    tokenization of prompt+completion (TRL's) would give different tokens."""
    prompt = tokenizer(pair["src"])["input_ids"]
    counts = [len(prompt)]
    for key in ("tgt_chosen", "tgt_rejected"):
        completion = tokenizer(pair[key], add_special_tokens=False)["input_ids"]
        joint = tokenizer(pair["src"] + pair[key])["input_ids"]
        if joint != prompt + completion:
            return None
        counts.append(len(completion) + 1)  # + EOS
    return counts[0], counts[1], counts[2]


@dataclass
class PairFile:
    """The filtered pairs written for both systems, with what the filter removed."""

    path: Path
    pairs: int
    dropped_too_long: int
    dropped_tokenization: int
    tokens_per_pair: float  # prompt counted twice, as PreferenceBatch.num_tokens does

    def as_dict(self) -> dict:
        return {**self.__dict__, "path": str(self.path)}


def write_pairs(source: Path, checkpoint: Path, target: Path, max_seq_len: int, limit: int | None = None) -> PairFile:
    """Write the pairs of `source` that fit `max_seq_len` untruncated to `target`."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    kept, too_long, mismatched, tokens = [], 0, 0, 0
    for pair in read_pairs(source):
        lengths = pair_lengths(tokenizer, pair)
        if lengths is None:
            mismatched += 1
        elif lengths[0] + max(lengths[1:]) > max_seq_len:
            too_long += 1
        else:
            kept.append(pair)
            tokens += 2 * lengths[0] + lengths[1] + lengths[2]
        if limit is not None and len(kept) >= limit:
            break
    with open(target, "w", encoding="utf-8") as out:
        for pair in kept:
            out.write(json.dumps(pair) + "\n")
    return PairFile(target, len(kept), too_long, mismatched, tokens / max(len(kept), 1))


def write_long_pairs(source: Path, checkpoint: Path, target: Path, prompt_tokens: int, count: int) -> PairFile:
    """Pairs of about `prompt_tokens` + completion tokens: HH prompts joined into one long prompt.

    The memory configuration needs ~1,800-token pairs, longer than any HH pair, so each long
    prompt is several conversations concatenated, followed by the last one's completions.
    """
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    pairs, joined, length = [], "", 0
    for pair in read_pairs(source):
        joined += pair["src"]
        length += len(tokenizer(pair["src"], add_special_tokens=False)["input_ids"])
        if length >= prompt_tokens:
            long_pair = {"src": joined, "tgt_chosen": pair["tgt_chosen"], "tgt_rejected": pair["tgt_rejected"]}
            if pair_lengths(tokenizer, long_pair) is not None:
                pairs.append(long_pair)
            joined, length = "", 0
        if len(pairs) >= count:
            break
    with open(target, "w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(pair) + "\n")
    lengths = [pair_lengths(tokenizer, p) for p in pairs]
    tokens = sum(2 * p + c + r for p, c, r in lengths)
    return PairFile(target, len(pairs), 0, 0, tokens / max(len(pairs), 1))
