"""`model.path` with the default tiny model: a given path is loaded, never built into.

A mistyped path used to become a brand-new random model (rc 0); the README's own-config example
set `model.path` without choosing `model=llama` and walked users into exactly that.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hydra.utils import instantiate
from transformers import LlamaConfig, LlamaForCausalLM

from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.models.tiny import TinyLlama
from lit_prefopt.train import train

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("make_dir", [False, True], ids=["missing", "empty"])
def test_path_without_a_checkpoint_is_refused_and_left_alone(compose, tmp_path: Path, make_dir: bool) -> None:
    typo = tmp_path / "ckpts" / "Llama-3.2-1B-Instruc"
    if make_dir:
        typo.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"model\.path=.*holds no checkpoint.*use model=llama model\.path="):
        train(compose(f"model.path={typo}"))
    assert list(typo.iterdir()) == [] if make_dir else not typo.parent.exists()


def test_path_with_another_model_is_refused_with_the_fix(compose, tmp_path: Path) -> None:
    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                 intermediate_size=64, vocab_size=1024)).save_pretrained(other)
    with pytest.raises(ValueError, match=r"not the tiny model \(hidden_size=32, .*use model=llama model\.path="):
        train(compose(f"model.path={other}"))


def test_path_with_a_tiny_model_is_loaded(compose, tiny_llama) -> None:
    checkpoint = instantiate(compose(f"model.path={tiny_llama.path}").model)
    assert isinstance(checkpoint, TinyLlama) and checkpoint.path == tiny_llama.path
    checkpoint.prepare()
    assert checkpoint.load_policy().config.hidden_size == 64


def test_readme_own_config_example_trains_the_given_checkpoint(compose, tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Your own config file", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "my_run.yaml").write_text(example)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    # As `--config-dir configs --config-name my_run` does: the user's file first, the package's configs behind it.
    with initialize_config_dir(config_dir=str(tmp_path / "configs"), version_base="1.3"):
        cfg = hydra_compose("my_run", overrides=[f"hydra.searchpath=[file://{REPO / 'lit_prefopt' / 'conf'}]"])
    GlobalHydra.instance().clear()
    assert cfg.model._target_ == f"{HFCheckpoint.__module__}.{HFCheckpoint.__qualname__}"
    assert cfg.model.path == "/ckpts/Llama-3.2-1B-Instruct" and cfg.optimizer.lr == 5e-7
