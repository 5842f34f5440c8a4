"""TR-DPO's reference sync: when it fires and what it writes."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from lit_prefopt.callbacks.reference_sync import ReferenceSync
from lit_prefopt.reference.source import LiveReference


def _module(policy_value: float, reference_value: float) -> SimpleNamespace:
    policy, reference = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)
    nn.init.constant_(policy.weight, policy_value)
    nn.init.constant_(reference.weight, reference_value)
    return SimpleNamespace(policy=policy, reference=reference, reference_source=LiveReference(None, 0, reference))


def test_syncs_after_every_nth_optimizer_step_only() -> None:
    """Micro-batch ends under accumulate_grad_batches=2 see global steps 0, 1, 1, 2, 2: the
    reference moves once at step 1 (mix 0.6: 0 -> 0.6 * 1.0), never at step 0 before any update,
    and once more at step 2 (0.6 + 0.6 * (1 - 0.6) = 0.84)."""
    sync = ReferenceSync(every_n_steps=1, mix=0.6)
    module = _module(policy_value=1.0, reference_value=0.0)
    seen = []
    for step in (0, 1, 1, 2, 2):
        sync.on_train_batch_end(SimpleNamespace(global_step=step), module)
        seen.append(module.reference.weight[0, 0].item())
    torch.testing.assert_close(torch.tensor(seen), torch.tensor([0.0, 0.6, 0.6, 0.84, 0.84]))


def test_waits_for_every_n_steps() -> None:
    sync = ReferenceSync(every_n_steps=3, mix=1.0)
    module = _module(policy_value=2.0, reference_value=0.0)
    for step in (1, 2):
        sync.on_train_batch_end(SimpleNamespace(global_step=step), module)
        assert module.reference.weight.abs().sum().item() == 0.0
    sync.on_train_batch_end(SimpleNamespace(global_step=3), module)
    torch.testing.assert_close(module.reference.weight, module.policy.weight.detach())
