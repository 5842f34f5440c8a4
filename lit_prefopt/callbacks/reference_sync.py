"""TR-DPO (Gorbatovski et al., 2024): move the reference toward the policy during training.

Every `every_n_steps` optimizer steps, reference <- mix * policy + (1 - mix) * reference
(`mix` = 1 is the hard update, a copy; the paper's soft update uses 0.5-0.6). The live
reference source (lit_prefopt.reference.source.LiveReference) does the update; this callback
decides when, and keeps the moved reference in the training state.

The synced reference is part of the training state: it is no longer the checkpoint on disk, so
this callback saves it with the checkpoint (single-file checkpoints) and restores it on resume.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from lit_prefopt.reference.source import LiveReference

log = logging.getLogger(__name__)


class ReferenceSync(Callback):
    """Soft (0 < mix < 1) or hard (mix = 1) reference updates every N optimizer steps."""

    def __init__(self, every_n_steps: int = 512, mix: float = 0.6) -> None:
        if every_n_steps < 1:
            raise ValueError(f"callbacks.reference_sync.every_n_steps must be >= 1, got {every_n_steps}")
        if not 0.0 < mix <= 1.0:
            raise ValueError(f"callbacks.reference_sync.mix must be in (0, 1], got {mix}")
        self.every_n_steps = every_n_steps
        self.mix = mix
        self._synced_at = -1
        self._restored: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, trainer: Trainer, module: LightningModule) -> None:
        if not isinstance(module.reference_source, LiveReference):
            raise ValueError(
                "TR-DPO (callbacks.reference_sync) needs a live reference model: not with model.lora, "
                "reference_cache=true or reference scores in the data"
            )

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        if self._restored is not None:
            module.reference_source.model.load_state_dict(self._restored)
            self._restored = None

    def on_train_batch_end(self, trainer: Trainer, module: LightningModule, *args: Any) -> None:
        """Sync after every N-th optimizer step. Under gradient accumulation this runs after each
        micro-batch: step 0 (no update yet) and repeats of a synced step are skipped."""
        step = trainer.global_step
        if step == 0 or step == self._synced_at or step % self.every_n_steps != 0:
            return
        module.reference_source.move_toward(module.policy, self.mix)
        self._synced_at = step

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"synced_at": self._synced_at}
        module = self._module
        if module is not None and module.device_mesh is None:
            state["reference"] = {k: v.detach().cpu() for k, v in module.reference_source.model.state_dict().items()}
        elif module is not None:
            log.warning("TR-DPO under FSDP: the synced reference is not saved; a resume restarts it from its path")
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._synced_at = state_dict.get("synced_at", -1)
        self._restored = state_dict.get("reference")

    def setup(self, trainer: Trainer, module: LightningModule, stage: str) -> None:
        self._module = module

    _module: LightningModule | None = None

