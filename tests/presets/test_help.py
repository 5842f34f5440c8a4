"""`--help` says what the program does, lists the config groups with their options and the most
used keys, instead of Hydra's generic header and a dump of the whole config."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.entry_process import run_lit_prefopt


@pytest.mark.slow
def test_help_describes_the_program_groups_and_keys(tmp_path: Path) -> None:
    shown = run_lit_prefopt("--help", cwd=tmp_path).stdout
    assert shown.startswith("lit_prefopt: preference-optimization finetuning")
    groups = {line.split(":")[0]: line.split(": ")[1].split(", ") for line in shown.splitlines()
              if line.startswith(("criterion: ", "model: ", "trainer: "))}
    assert {"dpo", "simpo", "orpo"} <= set(groups["criterion"]) and {"tiny", "llama"} <= set(groups["model"])
    assert {"default", "gpu"} <= set(groups["trainer"])
    for key in ("model.path=", "data.train_files=", "optimizer.lr=", "trainer.max_steps=", "ckpt_path=last"):
        assert key in shown, key
    assert "_target_" not in shown and "Powered by Hydra" not in shown, "the config dump and Hydra's generic text"
    assert len(shown.splitlines()) < 60
    assert not (tmp_path / "outputs").exists(), "--help trained nothing"
