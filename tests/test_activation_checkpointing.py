"""Activation checkpointing recomputes every decoder layer but the last, and changes no gradient."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lit_prefopt.models.activation_checkpointing import enable_activation_checkpointing


def _model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2,
                         intermediate_size=64, vocab_size=97)
    return LlamaForCausalLM(config).train()


def _grads(model: LlamaForCausalLM, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_each_layer_but_the_last_is_recomputed_in_backward() -> None:
    model = _model()
    enable_activation_checkpointing(model)
    calls = [0] * 3
    for index, layer in enumerate(model.model.layers):
        layer.mlp.register_forward_pre_hook(lambda *_, i=index: calls.__setitem__(i, calls[i] + 1))
    _grads(model, torch.randint(0, 97, (2, 11)))
    assert calls == [2, 2, 1]  # forward + recomputation, except the last layer's forward only
    assert [layer.gradient_checkpointing for layer in model.model.layers] == [True, True, False]


def test_gradients_equal_the_model_without_checkpointing() -> None:
    ids = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(1))
    plain, checkpointed = _model(), _model()
    enable_activation_checkpointing(checkpointed)
    expected, got = _grads(plain, ids), _grads(checkpointed, ids)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)

