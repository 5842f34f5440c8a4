"""The default optimizer (conf/optimizer/adamw.yaml): torch's fused AdamW, which updates like the
per-tensor loop torch runs on CPU otherwise but allocates no temporary the size of a weight."""

from __future__ import annotations

import pickle

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from lit_prefopt.optim import parameter_groups
from lit_prefopt.paths import PACKAGE_DIR

ADAMW = OmegaConf.load(PACKAGE_DIR / "conf" / "optimizer" / "adamw.yaml")


class WeightSizedOutputs(TorchDispatchMode):
    """Counts op results with `numel` elements that are new tensors (not an input returned in place)."""

    def __init__(self, numel: int) -> None:
        super().__init__()
        self.numel = numel
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {id(a) for a in args if isinstance(a, torch.Tensor)}
        for result in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(result, torch.Tensor) and result.numel() == self.numel and id(result) not in inputs:
                self.count += 1
        return out


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Embedding(300, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 300))


def _train(config: dict, steps: int = 3) -> torch.nn.Module:
    """`steps` AdamW updates from `config` with the same seeded gradients, weight decay on matrices."""
    model = _model()
    optimizer = instantiate(OmegaConf.create(config))(parameter_groups(model))
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for param in model.parameters():
            param.grad = torch.randn(param.shape, generator=generator)
        optimizer.step()
    return model


def test_default_adamw_is_fused_and_updates_like_the_loop() -> None:
    """Three steps with a large learning rate and weight decay: the fused kernel and torch's per-tensor
    loop (`fused: false`, which CPU runs otherwise) agree to float32 rounding."""
    settings = {**OmegaConf.to_container(ADAMW), "lr": 1e-2, "weight_decay": 0.1}
    fused, loop = _train(settings), _train({**settings, "fused": False, "foreach": False})
    assert instantiate(ADAMW)(_model().parameters()).defaults["fused"] is True
    moved = False
    for (name, a), b, start in zip(fused.named_parameters(), loop.parameters(), _model().parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6, msg=name)
        moved |= not torch.allclose(a, start)
    assert moved


def test_default_adamw_step_allocates_no_weight_sized_temporary() -> None:
    """The per-tensor loop makes sqrt(second moment) and its scaled copy for every weight: for a
    128k-vocabulary head, 250 MiB more at the step. The fused step writes in place."""
    weight = torch.nn.Parameter(torch.randn(64, 32))
    weight.grad = torch.randn(64, 32)
    counts = {}
    for fused in (True, False):
        optimizer = instantiate(ADAMW, fused=fused)([weight])
        optimizer.step()  # the moments are created on the first step
        with WeightSizedOutputs(weight.numel()) as outputs:
            optimizer.step()
        counts[fused] = outputs.count
    assert counts == {True: 0, False: 2}


class KeepsItsHyperparameters(torch.optim.SGD):
    """An optimizer that stores a list hyperparameter as given, as torch 2.9's AdamW does."""

    def __init__(self, params, lr: float, betas) -> None:
        super().__init__(params, lr=lr)
        for group in self.param_groups:
            group["betas"] = betas


def test_optimizer_state_holds_no_omegaconf_containers(tmp_path) -> None:
    """A YAML list reaches the optimizer as a ListConfig; kept in `param_groups`, it would make every
    checkpoint unreadable with `torch.load(weights_only=True)` (resume) under torch 2.9."""
    from omegaconf import ListConfig

    from lit_prefopt.optim import plain_hyperparameters

    factory = instantiate(OmegaConf.create({"_target_": f"{__name__}.KeepsItsHyperparameters", "_partial_": True,
                                            "lr": 0.1, "betas": [0.9, 0.95]}))
    optimizer = factory([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(optimizer.param_groups[0]["betas"], ListConfig)
    torch.save(optimizer.state_dict(), tmp_path / "before.pt")
    with pytest.raises(pickle.UnpicklingError, match="ListConfig"):
        torch.load(tmp_path / "before.pt", weights_only=True)

    assert plain_hyperparameters(optimizer) is optimizer
    assert optimizer.param_groups[0]["betas"] == (0.9, 0.95)
    torch.save(optimizer.state_dict(), tmp_path / "after.pt")
    assert torch.load(tmp_path / "after.pt", weights_only=True)["param_groups"][0]["betas"] == (0.9, 0.95)
