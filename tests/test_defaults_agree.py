"""Every default has one home: the YAML a run composes gives what the Python class gives alone.

A Python user who builds `DPOModule(model=...)`, `PreferenceDataModule(train_files=...)` or
`HFCheckpoint(path=...)` must get the same settings as `python -m lit_prefopt` does, never a
silently different (e.g. slower) path. (The criteria's own check is in
tests/criteria/test_configs.py.)
"""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lit_prefopt import DPOModule, PreferenceDataModule
from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.models.tiny import TinyLlama

CONF = Path(__file__).resolve().parents[1] / "lit_prefopt" / "conf"


def test_module_defaults_are_the_run_configs() -> None:
    """lr and the rest of AdamW come from conf/optimizer/adamw.yaml, the skip limit from train.yaml."""
    adamw = OmegaConf.load(CONF / "optimizer" / "adamw.yaml")
    parameters = inspect.signature(DPOModule).parameters
    assert parameters["lr"].default == adamw.lr == 5e-7
    assert parameters["max_consecutive_skips"].default == OmegaConf.load(CONF / "train.yaml").max_consecutive_skips
    weights = [torch.nn.Parameter(torch.zeros(2))]
    built = DPOModule(model="unused-dir").optimizer_factory(weights)
    configured = instantiate(adamw)(weights)
    assert type(built) is type(configured)
    assert {k: v for k, v in built.defaults.items()} == {k: v for k, v in configured.defaults.items()}


def test_data_yaml_defaults_are_the_class_defaults(compose) -> None:
    """Every data.* key but the bundled sample files equals PreferenceDataModule's default (share_prompt
    was false in Python and true in the YAML)."""
    node = compose().data
    defaults = {p.name: p.default for p in inspect.signature(PreferenceDataModule).parameters.values()}
    for key, value in OmegaConf.to_container(node, resolve=True).items():
        if key in ("_target_", "train_files", "val_files"):
            continue
        assert defaults[key] == value, f"data.{key}: YAML {value!r}, Python {defaults[key]!r}"


def test_model_yaml_defaults_are_the_class_defaults(tmp_path: Path) -> None:
    """conf/model/llama.yaml builds what HFCheckpoint(path=...) builds (chunked_logprobs was 0 in
    Python and 256 in the YAML), and conf/model/tiny.yaml what TinyLlama() builds."""
    llama = OmegaConf.load(CONF / "model" / "llama.yaml")
    assert vars(instantiate(llama, path=str(tmp_path))) == vars(HFCheckpoint(path=str(tmp_path)))
    tiny = OmegaConf.load(CONF / "model" / "tiny.yaml").model
    from_yaml = instantiate(tiny, cache_dir=str(tmp_path))
    assert vars(from_yaml) == vars(TinyLlama(cache_dir=str(tmp_path)))
