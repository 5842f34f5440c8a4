"""The built wheel works where users install it: no checkout, no network, any working directory.

The wheel is built from a copy of the sources (so the checkout gets no build/ or egg-info),
installed with `pip install --target` into an empty directory that reuses this environment's
dependencies, and run from a directory that holds nothing of the repository, with PYTHONPATH set
to that directory alone, so the installed package is the one imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]

MY_RUN = """\
defaults:
  - train
  - override criterion: simpo
  - _self_

run_name: from_console_script
criterion:
  beta: 3.0
"""


def package_files(root: Path) -> set[str]:
    """Every file of the lit_prefopt package under `root`, as wheel member names."""
    return {p.relative_to(root).as_posix() for p in (root / "lit_prefopt").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.slow
def test_wheel_installs_and_trains_from_any_directory(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "lit_prefopt", source / "lit_prefopt", ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PIP_NO_INDEX": "1"})

    run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
        cwd=tmp_path, env=env)
    (wheel,) = (tmp_path / "dist").glob("lit_prefopt-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        members = {name for name in archive.namelist() if name.startswith("lit_prefopt/")}
    expected = package_files(source)
    assert {"lit_prefopt/conf/train.yaml", "lit_prefopt/resources/sample/train.jsonl"} <= expected
    assert members == expected, f"missing from the wheel: {sorted(expected - members)}"

    site = tmp_path / "site"
    run([*PIP, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], cwd=tmp_path, env=env)
    env["PYTHONPATH"] = str(site)
    work = tmp_path / "work"
    work.mkdir()
    imported = run([sys.executable, "-c", "import lit_prefopt; print(lit_prefopt.__file__)"], cwd=work, env=env)
    assert Path(imported.stdout.strip()).is_relative_to(site), imported.stdout

    short = ("experiment=debug", "trainer.max_steps=2")
    run([sys.executable, "-m", "lit_prefopt", *short, "run_name=from_module"], cwd=work, env=env)

    configs = tmp_path / "my_configs"
    configs.mkdir()
    (configs / "my_run.yaml").write_text(MY_RUN)
    run([str(site / "bin" / "lit-prefopt"), "--config-dir", str(configs), "--config-name", "my_run", *short],
        cwd=work, env=env)

    for name in ("from_module", "from_console_script"):
        outputs = work / "outputs" / name
        assert (outputs / "hf" / "config.json").is_file() and (outputs / "hf" / "tokenizer.json").is_file(), name
        assert json.loads((outputs / "summary.json").read_text())["steps"] == 2, name
    composed = OmegaConf.load(work / "outputs" / "from_console_script" / ".hydra" / "config.yaml")
    assert composed.criterion.beta == 3.0 and "gamma_beta_ratio" in composed.criterion, "the user's file was used"
