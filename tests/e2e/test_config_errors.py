"""Bad config values fail before any model loads, naming the key."""

from __future__ import annotations

import pytest
from hydra.errors import MissingConfigException
from omegaconf.errors import MissingMandatoryValue

from lit_prefopt.train import train


def test_negative_beta_names_the_key(compose, monkeypatch) -> None:
    loaded = []
    monkeypatch.setattr("lit_prefopt.models.checkpoint.HFCheckpoint.load_policy", lambda self: loaded.append(1))
    with pytest.raises(ValueError, match=r"criterion\.beta"):
        train(compose("criterion.beta=-1"))
    assert not loaded


def test_unknown_criterion_names_the_group(compose) -> None:
    with pytest.raises(MissingConfigException, match="criterion"):
        compose("criterion=nope")


def test_missing_model_path_names_the_key(compose) -> None:
    with pytest.raises(MissingMandatoryValue, match=r"model\.path"):
        train(compose("model=llama"))


def test_model_path_that_is_not_a_checkpoint_names_the_key(compose, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.path"):
        train(compose("model=llama", f"model.path={tmp_path}"))
