"""The criteria tables of README.md and docs/CRITERIA.md list exactly the criteria there are.

Every option of conf/criterion/ (the registry's names and their presets) has one row, in both
tables, and the row's module is the class that `criterion=<option>` trains with, so a criterion
added to the registry without its row (or a row left after one is removed) fails here. Each
`key value` default of a docs/CRITERIA.md row is the option's composed value.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from lit_prefopt.criteria import CRITERIA
from lit_prefopt.criterion_modules import module_class

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "lit_prefopt" / "conf"
OPTIONS = sorted(path.stem for path in (CONF / "criterion").glob("*.yaml"))


def table_rows(document: Path, column: int = 2) -> dict[str, str]:
    """{option: the row's `column`-th cell (1: options, 2: module)} from the table whose header
    starts with `criterion=` (a row may name several options, e.g. "`apo_zero` / `apo_down`")."""
    lines = document.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `criterion=` | module |"))
    rows: dict[str, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = line.split("|")
        for option in re.findall(r"`(\w+)`", cells[1]):
            assert option not in rows, f"{document.name}: {option} has two rows"
            rows[option] = cells[column].strip().strip("`")
    return rows


@cache
def composed(option: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return OmegaConf.to_container(compose(overrides=[f"+criterion={option}"]).criterion)


def trained_module(option: str) -> str:
    return module_class(get_class(composed(option)["_target_"])).__name__


@pytest.mark.parametrize("document", ["README.md", "docs/CRITERIA.md"])
def test_table_lists_every_option_with_its_module(document: str) -> None:
    rows = table_rows(REPO / document)
    assert sorted(rows) == OPTIONS
    assert set(CRITERIA) <= set(rows)
    assert rows == {option: trained_module(option) for option in OPTIONS}


def test_criteria_md_defaults_are_the_configs() -> None:
    """"beta 0.1, label_smoothing 0" names keys of the option's YAML; prose ("dpo + ...", "(as simpo)") is skipped."""
    checked = 0
    for option, defaults in table_rows(REPO / "docs" / "CRITERIA.md", column=6).items():
        config = composed(option)
        for entry in re.sub(r"\(.*?\)", "", defaults).split(","):
            key, _, value = entry.strip().partition(" ")
            if key in config and re.fullmatch(r"\S+", value):
                said = yaml.safe_load(value)
                said = float(said) if isinstance(said, str) and re.fullmatch(r"[-+.\de]+", said) else said  # 1e-3
                assert said == config[key], f"{option}: {key} is {config[key]!r}, the table says {value}"
                checked += 1
    assert checked >= 30
