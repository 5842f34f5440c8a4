"""Shared fixtures: an isolated cache, and the real Hydra config composed for a tmp run dir."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

# Before anything imports transformers or wandb: nothing may reach a network in tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "lit_prefopt" / "conf"


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache per test session (tiny models, reference caches), shared with subprocesses."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["LIT_PREFOPT_CACHE"] = str(cache)
    return cache


@pytest.fixture
def compose(tmp_path: Path) -> Callable[..., "DictConfig"]:  # noqa: F821
    """Compose conf/train.yaml with overrides, writing the run into tmp_path/run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    import lit_prefopt  # noqa: F401  (resolvers)

    def _compose(*overrides: str, run_dir: Path | None = None):
        GlobalHydra.instance().clear()
        target = run_dir or tmp_path / "run"
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(
                config_name="train",
                overrides=[f"hydra.run.dir={target}", *overrides],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.run_dir = str(target)
            del cfg.hydra
        target.mkdir(parents=True, exist_ok=True)
        return cfg

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture(scope="session")
def tiny_llama(isolated_cache: Path):
    """The default tiny Llama checkpoint, built once per session in the isolated cache."""
    from lit_prefopt.models.tiny import TinyLlama

    checkpoint = TinyLlama(cache_dir=str(isolated_cache))
    checkpoint.prepare()
    return checkpoint
