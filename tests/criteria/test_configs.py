"""Every option in conf/criterion/ instantiates and runs, so no YAML can rot.

Each file is composed the way `criterion=<name>` composes it (its defaults list, e.g. cdpo on top
of dpo, and its package), instantiated with `hydra.utils.instantiate`, and run on random
log-probs. Its keys must cover every hyperparameter of the class it targets, so a new argument
cannot be left out of its config. The options are the registry's (`CRITERIA`: each name has its
file, holding its class's defaults) plus presets of a registered class.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from lit_prefopt.criteria import CRITERIA
from lit_prefopt.criteria.base import Criterion, PairLogps

CONF = Path(__file__).resolve().parents[2] / "lit_prefopt" / "conf"
OPTIONS = sorted(path.stem for path in (CONF / "criterion").glob("*.yaml"))


def criterion_node(name: str) -> DictConfig:
    """conf/criterion/<name>.yaml composed as the `criterion` group option, overrides-ready."""
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose(overrides=[f"+criterion={name}"]).criterion


def random_logps(batch: int, generator: torch.Generator) -> PairLogps:
    lengths = torch.randint(1, 20, (2, batch), generator=generator).float()
    logps = -torch.rand(4, batch, generator=generator) * lengths.repeat(2, 1) * 3
    return PairLogps(logps[0], logps[1], lengths[0], lengths[1], logps[2], logps[3])


def test_every_registered_criterion_has_its_option() -> None:
    assert set(CRITERIA) <= set(OPTIONS), f"no conf/criterion/<name>.yaml for {sorted(set(CRITERIA) - set(OPTIONS))}"
    assert {"dpo", "simpo", "cpo", "orpo", "ipo", "hinge", "weighted_sum"} <= set(CRITERIA)


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_trains_a_registered_criterion(name: str) -> None:
    """Options outside the registry are presets: they target a registered class."""
    target = get_class(criterion_node(name)._target_)
    assert target in CRITERIA.values(), f"conf/criterion/{name}.yaml targets {target.__name__}, which CRITERIA lacks"
    if name in CRITERIA:
        assert target is CRITERIA[name]


@pytest.mark.parametrize("name", OPTIONS)
def test_option_instantiates_and_runs(name: str) -> None:
    node = criterion_node(name)
    criterion = instantiate(node)
    assert isinstance(criterion, Criterion)
    generator = torch.Generator().manual_seed(0)
    logps = random_logps(5, generator)
    if not criterion.needs_reference:
        logps.ref_chosen = logps.ref_rejected = None
    out = criterion(logps)
    assert out.losses.shape == out.chosen_rewards.shape == out.rejected_rewards.shape == (5,)
    assert torch.isfinite(out.losses).all() and out.losses.dtype == torch.float32
    assert criterion.reduction in ("sum", "avg") and criterion.nll_scale >= 0


@pytest.mark.parametrize("name", OPTIONS)
def test_option_lists_every_hyperparameter(name: str) -> None:
    node = criterion_node(name)
    parameters = inspect.signature(get_class(node._target_)).parameters.values()
    named = {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    missing = named - set(OmegaConf.to_container(node))
    assert not missing, f"conf/criterion/{name}.yaml lacks {sorted(missing)}"


@pytest.mark.parametrize("name", ["simpo", "alphapo"])
def test_simpo_gamma_knobs_from_config(name: str) -> None:
    """The YAML default leaves both knobs null (ratio 0.25, gamma 0.5 at beta 2), so either one
    can be set alone on the command line."""
    node = criterion_node(name)
    assert instantiate(node).gamma == 0.5
    node.gamma = 1.0
    assert instantiate(node).gamma == 1.0
    node.gamma, node.gamma_beta_ratio = None, 0.5
    assert instantiate(node).gamma == 1.0


def settings(criterion: Criterion) -> dict[str, Any]:
    """A criterion's hyperparameters as built: its public attributes, buffers and sub-criteria."""
    values: dict[str, Any] = {k: v for k, v in vars(criterion).items() if not k.startswith("_") and k != "training"}
    values.update({f"buffer:{k}": v.tolist() for k, v in criterion.named_buffers(recurse=False)})
    values.update({f"term:{k}": settings(child) for k, child in criterion.named_children()})
    return values


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_criterion_yaml_defaults_are_the_class_defaults(name: str) -> None:
    """`criterion=<name>` builds what `CRITERIA[name]()` builds; arguments without a Python default
    (weighted_sum's `terms`) are the YAML's example and are passed to both."""
    from_yaml = instantiate(criterion_node(name), _partial_=True)
    required = [p.name for p in inspect.signature(CRITERIA[name]).parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    assert settings(from_yaml()) == settings(CRITERIA[name](**{k: from_yaml.keywords[k] for k in required}))
