"""The real HH-RLHF pairs shipped in the repository (data/hh_harmless/, MIT; see its README)."""

from __future__ import annotations

from pathlib import Path

HH_HARMLESS = Path(__file__).resolve().parents[1] / "data" / "hh_harmless"
HH_TRAIN = HH_HARMLESS / "train.jsonl"
HH_VALID = HH_HARMLESS / "valid.jsonl"
