"""Numeric config values, checked where they are read, each error naming its config key.

YAML and Hydra overrides hand over whatever was typed: `criterion.beta=abc` arrives as a string
(a comparison then fails with a TypeError that names no key), `=true` as a bool (which Python
counts as 1), `=inf` as a float every step would turn into a non-finite loss.
"""

from __future__ import annotations

import math
from typing import Any


def is_number(value: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def require_number(
    key: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """`value` as a float if it is a finite number within the bounds, else a ValueError naming `key`.

    An infinite bound is no bound; the message gives the bounds as `> 0`, `>= 0` or `in [0, 0.5)`.
    """
    fits = (
        is_number(value)
        and math.isfinite(value)
        and (value >= low if low_inclusive else value > low)
        and (value <= high if high_inclusive else value < high)
    )
    if not fits:
        raise ValueError(f"{key} must be {_describe(low, high, low_inclusive, high_inclusive)}, got {value!r}")
    return float(value)


def _describe(low: float, high: float, low_inclusive: bool, high_inclusive: bool) -> str:
    if math.isfinite(low) and math.isfinite(high):
        return f"a number in {'[' if low_inclusive else '('}{low:g}, {high:g}{']' if high_inclusive else ')'}"
    if math.isfinite(low):
        return f"a number {'>=' if low_inclusive else '>'} {low:g}"
    if math.isfinite(high):
        return f"a number {'<=' if high_inclusive else '<'} {high:g}"
    return "a finite number"
