"""The criteria tables of README.md and docs/CRITERIA.md list exactly the criteria there are.

Every option of conf/criterion/ (the registry's names and their presets) has one row, in both
tables, and the row's module is the class that `criterion=<option>` trains with, so a criterion
added to the registry without its row (or a row left after one is removed) fails here.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class

from lit_prefopt.criteria import CRITERIA
from lit_prefopt.criterion_modules import module_class

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "lit_prefopt" / "conf"
OPTIONS = sorted(path.stem for path in (CONF / "criterion").glob("*.yaml"))


def table_rows(document: Path) -> dict[str, str]:
    """{option: module} from the table whose header starts with `criterion=` (a row may name
    several options, e.g. "`apo_zero` / `apo_down`")."""
    lines = document.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| `criterion=` | module |"))
    rows: dict[str, str] = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        options, module = line.split("|")[1:3]
        for option in re.findall(r"`(\w+)`", options):
            assert option not in rows, f"{document.name}: {option} has two rows"
            rows[option] = module.strip().strip("`")
    return rows


@cache
def trained_module(option: str) -> str:
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        target = compose(overrides=[f"+criterion={option}"]).criterion._target_
    return module_class(get_class(target)).__name__


@pytest.mark.parametrize("document", ["README.md", "docs/CRITERIA.md"])
def test_table_lists_every_option_with_its_module(document: str) -> None:
    rows = table_rows(REPO / document)
    assert sorted(rows) == OPTIONS
    assert set(CRITERIA) <= set(rows)
    assert rows == {option: trained_module(option) for option in OPTIONS}
