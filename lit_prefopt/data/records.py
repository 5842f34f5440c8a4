"""What a valid preference record is, and what exactly is wrong with an invalid one.

Two record kinds may share a file (docs/ARCHITECTURE.md#data-records-and-tokenization):
- text: `{"src": str, "tgt_chosen": str, "tgt_rejected": str}`, tokenized by fairseq2's rule;
- chat: `{"prompt": [messages], "chosen": [messages], "rejected": [messages]}`, OpenAI-style
  messages rendered with the tokenizer's chat template; the completions are assistant messages.
Both may carry `id` and the pair of precomputed `reference_score_chosen`/`_rejected`.

Every problem is raised as a `BadRecord` that knows its `file:line`, so the validation scan, the
`skip` policy and a stream read without a scan all report the same message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

TEXT_FIELDS = ("src", "tgt_chosen", "tgt_rejected")
CHAT_FIELDS = ("prompt", "chosen", "rejected")
SCORE_FIELDS = ("reference_score_chosen", "reference_score_rejected")
ROLES = ("system", "user", "assistant", "tool")

Messages = list[dict[str, str]]


class DataValidationError(ValueError):
    """The data files hold records that cannot be trained on; the message lists `file:line: problem`."""


class BadRecord(DataValidationError):
    """One record's problem, located as `where` (`file:line`)."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}")
        self.where = where
        self.problem = problem


@dataclass(frozen=True)
class PreferenceRecord:
    """One validated pair. `prompt`/`chosen`/`rejected` are strings (text) or message lists (chat)."""

    prompt: str | Messages
    chosen: str | Messages
    rejected: str | Messages
    where: str
    id: str | None = None
    reference_chosen: float | None = None
    reference_rejected: float | None = None

    @property
    def is_chat(self) -> bool:
        return not isinstance(self.prompt, str)

    @property
    def has_reference_scores(self) -> bool:
        return self.reference_chosen is not None


def parse_record(data: bytes, where: str) -> PreferenceRecord:
    """Decode, parse and validate one JSONL line; raise `BadRecord` naming `where` on any problem.

    A UTF-8 byte order mark is accepted and stripped at the start of a file (the reader does
    that: editors on Windows write one), but reported anywhere else, where it means files were
    concatenated byte-wise.
    """
    try:
        line = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRecord(where, f"undecodable bytes (not UTF-8) at byte {error.start}: {data[error.start:error.start + 8]!r}") from None
    if line.startswith("\ufeff"):
        raise BadRecord(where, "byte order mark (BOM) inside the file, not at its start (were files concatenated?)")
    try:
        # Without its line break, a string left open reads as unterminated, not as holding a control character.
        value = json.loads(line.rstrip("\r\n"))
    except json.JSONDecodeError as error:
        # Some of json's messages end in "at" ("Unterminated string starting at").
        raise BadRecord(where, f"invalid JSON ({error.msg.removesuffix(' at')} at column {error.colno})") from None
    if not isinstance(value, dict):
        raise BadRecord(where, f"expected a JSON object, got {_json_type(value)}")
    if any(name in value for name in TEXT_FIELDS):
        prompt, chosen, rejected = (_text_field(value, name, where) for name in TEXT_FIELDS)
    elif any(name in value for name in CHAT_FIELDS):
        prompt = _messages_field(value, "prompt", where, roles=ROLES)
        chosen, rejected = (_messages_field(value, name, where, roles=("assistant",)) for name in CHAT_FIELDS[1:])
    else:
        raise BadRecord(
            where,
            "missing fields: a record needs 'src', 'tgt_chosen', 'tgt_rejected' (text) "
            "or 'prompt', 'chosen', 'rejected' (chat)",
        )
    if chosen == rejected:
        raise BadRecord(where, "chosen and rejected completions are identical")
    reference_chosen, reference_rejected = _reference_scores(value, where)
    record_id = value.get("id")
    return PreferenceRecord(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        where=where,
        id=None if record_id is None else str(record_id),
        reference_chosen=reference_chosen,
        reference_rejected=reference_rejected,
    )


def _text_field(record: dict, name: str, where: str) -> str:
    if name not in record:
        raise BadRecord(where, f"missing field '{name}'")
    value = record[name]
    if not isinstance(value, str):
        raise BadRecord(where, f"field '{name}' must be a string, got {_json_type(value)}")
    if not value.strip():
        raise BadRecord(where, f"field '{name}' is empty")
    _require_encodable(value, f"field '{name}'", where)
    return value


def _messages_field(record: dict, name: str, where: str, roles: tuple[str, ...]) -> Messages:
    if name not in record:
        raise BadRecord(where, f"missing field '{name}'")
    messages = record[name]
    if not isinstance(messages, list):
        raise BadRecord(where, f"field '{name}' must be a list of messages, got {_json_type(messages)}")
    if not messages:
        raise BadRecord(where, f"field '{name}' is empty")
    for index, message in enumerate(messages):
        label = f"{name}[{index}]"
        if not isinstance(message, dict):
            raise BadRecord(where, f"{label} must be an object with 'role' and 'content', got {_json_type(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in roles:
            raise BadRecord(where, f"{label}.role must be one of {', '.join(roles)}, got {role!r}")
        if not isinstance(content, str):
            raise BadRecord(where, f"{label}.content must be a string, got {_json_type(content)}")
        if not content.strip():
            raise BadRecord(where, f"{label}.content is empty")
        _require_encodable(content, f"{label}.content", where)
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _require_encodable(text: str, label: str, where: str) -> None:
    """JSON escapes can spell lone UTF-16 surrogates (\\ud800) that no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise BadRecord(where, f"{label} has an unpaired surrogate escape at character {error.start} (not valid Unicode)") from None


def _reference_scores(record: dict, where: str) -> tuple[float | None, float | None]:
    """Both scores or neither; 0.0 is a valid score (a missing one is None, never 0)."""
    present = [name for name in SCORE_FIELDS if name in record and record[name] is not None]
    if not present:
        return None, None
    if len(present) == 1:
        missing = next(name for name in SCORE_FIELDS if name not in present)
        raise BadRecord(where, f"'{present[0]}' is given but '{missing}' is not")
    scores = []
    for name in SCORE_FIELDS:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BadRecord(where, f"field '{name}' must be a finite number, got {value!r}")
        scores.append(float(value))
    return scores[0], scores[1]


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
