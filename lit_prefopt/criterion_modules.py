"""One LightningModule per criterion (`DPOModule`, `SimPOModule`, ...), derived from `CRITERIA`.

Each is `CriterionModule` bound to one criterion class: the step, the metrics and the reference
handling are `PreferenceModule`'s, written once; what a class adds is a constructor that speaks
the criterion's language, so a notebook or a plain Lightning script needs no config:

    module = DPOModule(model="/ckpts/llama", beta=0.1, lr=5e-7)
    lightning.Trainer(max_steps=100).fit(module, datamodule=PreferenceDataModule(...))
    module.save_pretrained("out/hf")

The classes are generated from the registry, so a new criterion gets its module with no file of
its own; `module_class` does the same for a criterion that is not registered (a user's own). The
Hydra entry builds these same classes, the criterion's config choosing which.

Defaults have one home: `lr` and AdamW's other settings are read from `conf/optimizer/adamw.yaml`,
`max_consecutive_skips` from `conf/train.yaml`, and a criterion's hyperparameters are its class's
(the tests check each YAML default against them).
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any, ClassVar

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from transformers import PreTrainedTokenizerBase

from lit_prefopt.criteria import CRITERIA
from lit_prefopt.criteria.base import Criterion
from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.models.loaded import LoadedModels, ModelInput
from lit_prefopt.module import OptimizerFactory, PreferenceModule, SchedulerFactory
from lit_prefopt.paths import PACKAGE_DIR

ADAMW_CONFIG = PACKAGE_DIR / "conf" / "optimizer" / "adamw.yaml"
DEFAULT_LR: float = OmegaConf.load(ADAMW_CONFIG).lr
DEFAULT_MAX_CONSECUTIVE_SKIPS: int = OmegaConf.load(PACKAGE_DIR / "conf" / "train.yaml").max_consecutive_skips


def adamw(lr: float = DEFAULT_LR) -> OptimizerFactory:
    """The `optimizer=adamw` config (betas, weight decay, eps) with learning rate `lr`."""
    return instantiate(OmegaConf.load(ADAMW_CONFIG), lr=lr)


class CriterionModule(PreferenceModule):
    """`PreferenceModule` for one criterion class, built from models and hyperparameters.

    `model`: a checkpoint directory, a loaded `transformers` model, or an `HFCheckpoint` (for
    its dtype, LoRA, attention and memory settings). `reference_model`: a directory or a loaded
    model; omitted, it is `model` as given (a frozen copy), and only loaded when the criterion
    needs one. The criterion's hyperparameters go by their config names (`beta=0.1`); `lr` sets
    AdamW's learning rate, or `optimizer` (a factory `params -> Optimizer`, as `optimizer=` configs
    build) replaces AdamW. `scheduler` is a factory `optimizer -> LRScheduler` stepped every
    optimizer step; None keeps the learning rate constant. `tokenizer` is needed only when the
    policy is a model built in memory (else it is loaded from the policy's directory).

    The Hydra entry passes the `criterion` it built (so a bad value fails before anything loads),
    the data scan's `reference_from_data` and the run `config`; Python users leave them out.
    """

    criterion_class: ClassVar[type[Criterion]]

    def __init__(
        self,
        model: ModelInput | HFCheckpoint,
        reference_model: ModelInput | None = None,
        *,
        lr: float = DEFAULT_LR,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        max_consecutive_skips: int = DEFAULT_MAX_CONSECUTIVE_SKIPS,
        criterion: Criterion | None = None,
        reference_from_data: bool = False,
        config: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        if optimizer is not None and lr != DEFAULT_LR:
            raise ValueError(
                f"{type(self).__name__}: give lr inside optimizer, or drop optimizer= to use AdamW with lr"
            )
        super().__init__(
            checkpoint=_model_source(model, reference_model, tokenizer),
            criterion=self._criterion(criterion, hyperparameters),
            optimizer=optimizer or adamw(lr),
            scheduler=scheduler,
            reference_from_data=reference_from_data,
            max_consecutive_skips=max_consecutive_skips,
            config=config,
        )
        self.tokenizer = tokenizer

    @classmethod
    def _criterion(cls, criterion: Criterion | None, hyperparameters: dict[str, Any]) -> Criterion:
        name = cls.__name__
        if criterion is None:
            accepted = inspect.signature(cls.criterion_class).parameters.values()
            if not any(p.kind is p.VAR_KEYWORD for p in accepted):
                unknown = sorted(set(hyperparameters) - {p.name for p in accepted})
                if unknown:
                    takes = [p.name for p in accepted]
                    raise TypeError(f"{name} got unknown hyperparameters {unknown}; it takes {takes}")
            return cls.criterion_class(**hyperparameters)
        if hyperparameters:
            raise TypeError(f"{name}: give criterion= or hyperparameters {sorted(hyperparameters)}, not both")
        if not isinstance(criterion, cls.criterion_class):
            raise TypeError(f"{name} trains {cls.criterion_class.__name__}, got a {type(criterion).__name__}")
        return criterion

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._reference_is_an_object:
            checkpoint["reference_fingerprint"] = reference_fingerprint(self.reference)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse to resume against another reference than the run started with.

        A reference given as an object (or copied from a policy given as one) has no directory
        the checkpoint could name, so the checkpoint keeps a fingerprint of its weights instead.
        """
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("reference_fingerprint")
        if saved is None or self.reference is None:
            return
        now = reference_fingerprint(self.reference)
        if len(now) != len(saved) or not torch.allclose(torch.tensor(saved), torch.tensor(now), rtol=1e-6):
            raise ValueError(
                "this checkpoint was trained against a reference model given as an object, and the reference "
                "given now has other weights: resume with the same reference_model (or, if it was omitted, the "
                "same starting model), or pass the reference as a checkpoint directory"
            )

    @property
    def _reference_is_an_object(self) -> bool:
        return self.reference is not None and getattr(self.checkpoint, "reference_given", False)


def reference_fingerprint(model: torch.nn.Module) -> list[float]:
    """Per-tensor sums and L2 norms of the model's weights, in float64: cheap, and a model with
    other weights differs in them."""
    weights = [p.detach() for p in model.parameters()]
    moments = [
        torch.stack([w.sum(dtype=torch.float64), torch.linalg.vector_norm(w, dtype=torch.float64)]) for w in weights
    ]
    return torch.cat(moments).tolist()


def _model_source(
    model: ModelInput | HFCheckpoint, reference: ModelInput | None, tokenizer: PreTrainedTokenizerBase | None
) -> HFCheckpoint | LoadedModels:
    """An `HFCheckpoint` when both are directories, else `LoadedModels` over the objects."""
    if isinstance(model, HFCheckpoint):
        if reference is not None:
            raise ValueError("give the reference as the HFCheckpoint's reference_path, not as reference_model")
        return model
    if isinstance(model, torch.nn.Module) or isinstance(reference, torch.nn.Module):
        return LoadedModels(model, reference, tokenizer)
    return HFCheckpoint(path=str(model), reference_path=str(reference) if reference is not None else None)


@cache
def module_class(criterion_class: type[Criterion]) -> type[CriterionModule]:
    """The LightningModule of `criterion_class`: the registered one, else one made now (and
    kept), named after the criterion with a `Module` suffix. Its signature lists the
    criterion's hyperparameters next to the module's own arguments."""
    for registered in MODULES.values():
        if registered.criterion_class is criterion_class:
            return registered
    return _make_module_class(criterion_class)


def _make_module_class(criterion_class: type[Criterion]) -> type[CriterionModule]:
    name = f"{criterion_class.__name__}Module"
    module = type(name, (CriterionModule,), {
        "criterion_class": criterion_class,
        "__module__": __name__,
        "__doc__": f"Trains a policy with `{criterion_class.__module__}.{criterion_class.__name__}` "
                   f"(`CriterionModule` documents the arguments).",
    })
    own = list(inspect.signature(CriterionModule).parameters.values())
    hyperparameters = [
        p.replace(kind=p.KEYWORD_ONLY) if p.kind is not p.VAR_KEYWORD else p
        for p in inspect.signature(criterion_class).parameters.values()
    ]
    keyword = [p for p in hyperparameters if p.kind is p.KEYWORD_ONLY]
    var_keyword = [p for p in hyperparameters if p.kind is p.VAR_KEYWORD][:1]
    module.__signature__ = inspect.Signature([*own[:2], *keyword, *own[2:-1], *var_keyword])
    return module


MODULES: dict[str, type[CriterionModule]] = {
    cls.__name__ + "Module": _make_module_class(cls) for cls in CRITERIA.values()
}
globals().update(MODULES)
