"""Activation checkpointing recomputes every decoder layer but the last, reuses the attention kernel's
output where it can, and changes no gradient."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import LlamaConfig, LlamaForCausalLM

from lit_prefopt.models.activation_checkpointing import enable_activation_checkpointing


def _model(seed: int = 0, kv_heads: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=kv_heads,
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

class CountFlashAttention(TorchDispatchMode):
    """Counts the CPU FlashAttention forward kernel's runs inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default:
            self.calls += 1
        return func(*args, **(kwargs or {}))


def _flash_calls(model: LlamaForCausalLM, **inputs: torch.Tensor) -> tuple[dict[str, torch.Tensor], int]:
    """Gradients of a summed-logits loss, and how often the CPU FlashAttention forward kernel ran."""
    model.zero_grad()
    with CountFlashAttention() as count:
        model(**inputs, use_cache=False).logits.float().square().mean().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}, count.calls


def _shared_prompt_mask(rows: int, length: int, prompt: int) -> torch.Tensor:
    """An additive [rows, 1, L, L] mask of [prompt | chosen | rejected] rows (rejected skips chosen)."""
    position = torch.arange(length)
    part = (position >= prompt).long() + (position >= (prompt + length) // 2).long()
    allowed = (position[None, :] <= position[:, None]) & ((part[None, :] == 0) | (part[None, :] == part[:, None]))
    return torch.zeros(length, length).masked_fill_(~allowed, float("-inf")).expand(rows, 1, length, length)


def test_recomputation_reuses_the_attention_kernels_output_with_bitwise_equal_gradients() -> None:
    ids = torch.randint(0, 97, (2, 13), generator=torch.Generator().manual_seed(2))
    mask = _shared_prompt_mask(2, 13, prompt=5)
    for inputs in ({"input_ids": ids}, {"input_ids": ids, "attention_mask": mask}):  # causal, and an additive mask
        recomputed, kept = _model(), _model()
        enable_activation_checkpointing(recomputed, keep_attention=False)
        enable_activation_checkpointing(kept)
        expected, recomputed_calls = _flash_calls(recomputed, **inputs)
        got, kept_calls = _flash_calls(kept, **inputs)
        assert (recomputed_calls, kept_calls) == (5, 3)  # 3 layers' forwards, + 2 recomputations without keeping
        for name in expected:
            assert torch.equal(got[name], expected[name]), name


def test_attention_outside_the_flash_kernel_is_recomputed_as_before() -> None:
    """Grouped-query heads without a mask go to SDPA with `enable_gqa`, and under autocast (bf16-mixed)
    SDPA gets float32 queries beside bf16 values for autocast to cast: neither is taken, both are
    recomputed as without keeping, same gradients. Under no_grad (validation) nothing is kept."""
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    for kv_heads, autocast in ((1, False), (2, True)):
        recomputed, kept = _model(kv_heads=kv_heads), _model(kv_heads=kv_heads)
        enable_activation_checkpointing(recomputed, keep_attention=False)
        enable_activation_checkpointing(kept)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            expected, recomputed_calls = _flash_calls(recomputed, input_ids=ids)
            got, kept_calls = _flash_calls(kept, input_ids=ids)
        assert recomputed_calls == kept_calls == 5
        for name in expected:
            assert torch.equal(got[name], expected[name]), name
    with torch.no_grad():
        torch.testing.assert_close(kept(input_ids=ids, use_cache=False).logits,
                                   _model()(input_ids=ids, use_cache=False).logits, rtol=0, atol=0)
