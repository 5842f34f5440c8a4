"""Activation checkpointing of the decoder layers (`model.gradient_checkpointing`).

Every decoder layer keeps only its input in the forward and recomputes the rest in the backward,
except the last one. Its activations are the first the backward needs: a checkpointed last layer
is recomputed as soon as the backward starts, so keeping them from the forward leaves the
backward's peak (one layer's activations) as it was and saves one layer's forward per step (a
quarter of the recomputation of a 4-layer model, 1/32 of an 8B Llama's).

Selective checkpointing that keeps the attention kernel's output (torch's
`create_selective_checkpoint_contexts`) was measured and left out: on CPU its dispatch mode, which
sees every op of the checkpointed layers, cost more than the attention it saved (0.44-0.46 s
against 0.43-0.44 s per step in the benchmark's SimPO run).
"""

from __future__ import annotations

from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Checkpoint each decoder layer but the last (non-reentrant, as FSDP2 and compile need)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    layers = [module for module in model.modules() if isinstance(module, GradientCheckpointingLayer)]
    if layers:
        layers[-1].gradient_checkpointing = False
