"""LoRA adapters through peft: only the adapters train; the base weights are the reference.

peft is an optional dependency (`pip install lit_prefopt[lora]`), imported only when
`model.lora.r > 0`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn
from transformers import PreTrainedModel


def with_lora_adapters(model: PreTrainedModel, settings: dict) -> nn.Module:
    """Wrap `model` with LoRA adapters; `settings` are `model.lora.*` (r, alpha, dropout, target_modules)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("model.lora.r > 0 needs peft: pip install 'lit_prefopt[lora]'") from error
    config = LoraConfig(
        r=int(settings["r"]),
        lora_alpha=float(settings.get("alpha", 2 * int(settings["r"]))),
        lora_dropout=float(settings.get("dropout", 0.0)),
        target_modules=settings.get("target_modules", "all-linear"),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def has_adapters(model: nn.Module) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


@contextmanager
def base_model_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The adapter-wrapped model acting as its frozen base: adapters off, eval mode."""
    was_training = model.training
    model.eval()
    try:
        with model.disable_adapter():
            yield model
    finally:
        model.train(was_training)


def merge_adapters(model: nn.Module) -> PreTrainedModel:
    """The plain transformers model with the adapters merged into its weights (in place: for the
    export at the end of training)."""
    return model.merge_and_unload()
