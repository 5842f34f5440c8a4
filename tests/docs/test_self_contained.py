"""The repository stands alone: nothing in it refers to files outside it, and every citation of
docs/ARCHITECTURE.md names a section that exists there."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini"}
SOURCE_DIRS = ("lit_prefopt", "tests", "benchmarks", "docs", "data")
# Spelled in pieces so this file does not match itself.
OUTSIDE = ("DESIGN" + ".md", "../" + "shared", "shared" + "/data")
CITATION = re.compile(r"docs/ARCHITECTURE\.md#([a-z0-9-]+)")


def repository_texts() -> dict[Path, str]:
    files = [REPO / name for name in ("README.md", "Makefile", "pyproject.toml")]
    for directory in SOURCE_DIRS:
        files += [p for p in (REPO / directory).rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file()]
    return {p: p.read_text(encoding="utf-8") for p in files if "__pycache__" not in p.parts}


def heading_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_nothing_refers_to_files_outside_the_repository() -> None:
    texts = repository_texts()
    assert len(texts) > 100, "the walk found the repository's files"
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for path, text in texts.items() if path != Path(__file__).resolve()
             for number, line in enumerate(text.splitlines(), 1) if any(pattern in line for pattern in OUTSIDE)]
    assert not found, "\n".join(found)


def test_every_architecture_citation_names_a_section() -> None:
    architecture = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    sections = {heading_anchor(line.lstrip("#")) for line in architecture.splitlines() if line.startswith("## ")}
    cited = {(path.relative_to(REPO), anchor) for path, text in repository_texts().items()
             for anchor in CITATION.findall(text)}
    assert len(cited) >= 15, "the code cites the architecture page"
    assert not [c for c in cited if c[1] not in sections], sorted(sections)


def test_shipped_hh_pairs_carry_their_licence() -> None:
    licence = (REPO / "data" / "hh_harmless" / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "Copyright (c) 2022 Anthropic" in licence
    readme = (REPO / "data" / "hh_harmless" / "README.md").read_text(encoding="utf-8")
    assert "https://github.com/anthropics/hh-rlhf" in readme and "LICENSE" in readme
