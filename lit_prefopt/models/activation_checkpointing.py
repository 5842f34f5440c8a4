"""Activation checkpointing of the decoder layers (`model.gradient_checkpointing`).

Every decoder layer keeps only its input in the forward and recomputes the rest in the backward,
except the last one. Its activations are the first the backward needs: a checkpointed last layer
is recomputed as soon as the backward starts, so keeping them from the forward leaves the
backward's peak (one layer's activations) as it was and saves one layer's forward per step (a
quarter of the recomputation of a 4-layer model, 1/32 of an 8B Llama's).

The recomputation skips the attention kernel where it can: checkpointed layers keep its output
(lit_prefopt.models.kept_attention), one hidden state per token and layer.
"""

from __future__ import annotations

from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer

from lit_prefopt.models.kept_attention import kept_attention_contexts


def enable_activation_checkpointing(model: PreTrainedModel, keep_attention: bool = True) -> None:
    """Checkpoint each decoder layer but the last (non-reentrant, as FSDP2 and compile need).

    `keep_attention`: keep the attention kernel's output for the recomputation (off for compiled
    layers, whose graphs are traced without the contexts that keep it).
    """
    options: dict = {"use_reentrant": False}
    if keep_attention:
        options["context_fn"] = kept_attention_contexts
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:  # transformers before the rename; the old name warns of its removal in v6
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    layers = [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]
    if layers:
        layers[-1].gradient_checkpointing = False
