"""Records to token ids (fairseq2's rule, or the chat template), and the over-length policy.

The tokenized pair keeps the prompt and the two completions apart, so a collator can stack
`prompt + chosen` and `prompt + rejected` rows, or encode the shared prompt once.

Text records (docs/ARCHITECTURE.md#data-records-and-tokenization): the prompt is tokenized alone with no special tokens, then
the tokenizer's BOS is put in front when it has one; each completion is tokenized alone with no
special tokens and EOS appended. Tokenizing with `add_special_tokens=False` and adding BOS/EOS
by hand gives the same ids for every tokenizer, whatever its post-processor would add.

Chat records: the prompt messages are rendered with the chat template and the generation
prompt; the prompt plus one completion is rendered again, and must start with exactly the
prompt's ids (so both completions share them). The completion is what follows, up to and
including the last EOS (the end of the assistant turn; template text after it, such as a
newline, is not scored), or with EOS appended when the template wrote none. The template writes
BOS itself and `tokenize=True` adds no second one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from jinja2 import TemplateError

from lit_prefopt.data.records import BadRecord, Messages, PreferenceRecord


@dataclass(frozen=True)
class TokenizedPair:
    """A pair's token ids, prompt and completions kept apart, with what the batch needs of its record."""

    prompt: tuple[int, ...]
    chosen: tuple[int, ...]
    rejected: tuple[int, ...]
    id: str | None = None
    reference_chosen: float | None = None
    reference_rejected: float | None = None
    truncated: bool = False

    @property
    def length(self) -> int:
        """Tokens of the longer of the pair's two rows: its padded width in a batch."""
        return len(self.prompt) + max(len(self.chosen), len(self.rejected))

    @property
    def shared_length(self) -> int:
        """Tokens of the pair's one row [prompt | chosen | rejected]: its width in a shared-prompt batch."""
        return len(self.prompt) + len(self.chosen) + len(self.rejected)


class PairTokenizer:
    """Tokenizes records with a Hugging Face tokenizer; needs EOS, uses BOS when there is one."""

    def __init__(self, tokenizer: Any) -> None:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token: completions must end with one")
        self.tokenizer = tokenizer
        self.bos = tokenizer.bos_token_id
        self.eos = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def __call__(self, record: PreferenceRecord) -> TokenizedPair:
        if record.is_chat:
            prompt, chosen, rejected = self._chat(record)
        else:
            prompt = ([self.bos] if self.bos is not None else []) + self._ids(record.prompt)
            chosen = self._ids(record.chosen) + [self.eos]
            rejected = self._ids(record.rejected) + [self.eos]
        return TokenizedPair(
            tuple(prompt), tuple(chosen), tuple(rejected), record.id, record.reference_chosen, record.reference_rejected
        )

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _chat(self, record: PreferenceRecord) -> tuple[list[int], list[int], list[int]]:
        prompt = self._render(record, record.prompt, add_generation_prompt=True)
        return prompt, self._completion(record, prompt, record.chosen), self._completion(record, prompt, record.rejected)

    def _completion(self, record: PreferenceRecord, prompt: list[int], messages: Messages) -> list[int]:
        full = self._render(record, [*record.prompt, *messages], add_generation_prompt=False)
        if full[: len(prompt)] != prompt:
            raise BadRecord(
                record.where,
                "the chat template renders the prompt differently when a completion follows it, so "
                "chosen and rejected cannot share the prompt tokens",
            )
        completion = full[len(prompt):]
        if self.eos in completion:
            return completion[: len(completion) - completion[::-1].index(self.eos)]
        return completion + [self.eos]

    def _render(self, record: PreferenceRecord, messages: Messages, add_generation_prompt: bool) -> list[int]:
        """The template's token ids; a template that refuses the messages (Gemma's "System role
        not supported", Mistral's alternating roles) makes the record a bad record, at its line."""
        if not getattr(self.tokenizer, "chat_template", None):
            raise BadRecord(record.where, "chat record, but the tokenizer has no chat template (use src/tgt_* records)")
        try:
            encoded = self.tokenizer.apply_chat_template(
                messages, tokenize=True, add_generation_prompt=add_generation_prompt, return_dict=True
            )
        except (TemplateError, ValueError) as error:
            raise BadRecord(record.where, f"the chat template refused the messages: {error}") from None
        return list(encoded["input_ids"])


def fit_length(pair: TokenizedPair, max_seq_len: int, bos: int | None) -> TokenizedPair:
    """Cut a pair so that prompt + the longer completion fits `max_seq_len` (the `truncate` policy).

    The rule: the prompt keeps its end (the turn the completions answer), and BOS in front of it
    when it started with one; each completion keeps its start, at least one token. The prompt
    keeps everything the longer completion leaves free, but never less than half the window, so
    a very long completion cannot squeeze the prompt away. The pair is marked `truncated`.
    """
    longest = max(len(pair.chosen), len(pair.rejected))
    if len(pair.prompt) + longest <= max_seq_len:
        return pair
    prompt_budget = min(len(pair.prompt), max(max_seq_len // 2, max_seq_len - longest))
    completion_budget = max_seq_len - prompt_budget
    prompt = pair.prompt[len(pair.prompt) - prompt_budget:]
    if bos is not None and pair.prompt[0] == bos and prompt[0] != bos:
        prompt = (bos, *prompt[1:])
    return replace(
        pair,
        prompt=prompt,
        chosen=pair.chosen[:completion_budget],
        rejected=pair.rejected[:completion_budget],
        truncated=True,
    )
