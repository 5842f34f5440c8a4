"""`curves.png` is drawn from metrics.csv, and a missing matplotlib skips it with a warning rather
than failing a run that has finished."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lit_prefopt.outputs.report import write_curves

CSV = "step,train/loss,val/loss,train/rewards/margin,train/rewards/accuracy\n0,0.69,0.70,0.0,0.5\n1,0.60,,0.3,0.75\n"


def test_curves_are_drawn_from_the_metrics_csv(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(CSV)
    assert write_curves(tmp_path / "metrics.csv", tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_without_matplotlib_the_plot_is_skipped_with_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "metrics.csv").write_text(CSV)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.warns(UserWarning, match="curves.png not written: matplotlib cannot be imported"):
        assert write_curves(tmp_path / "metrics.csv", tmp_path / "curves.png") is False
    assert not (tmp_path / "curves.png").exists()
