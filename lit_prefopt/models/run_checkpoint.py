"""Starting from an earlier lit_prefopt run's checkpoint file (e.g. SFT -> DPO).

A `.ckpt` holds the trained policy's weights under `policy.` and the directory of the model it
started from under `model_path`; that directory supplies the architecture and the tokenizer. A
LoRA run's weights are peft's (base layers plus adapters); its `model.lora` settings, kept in the
checkpoint's config, say how to rebuild the adapters before merging them.
"""

from __future__ import annotations

from pathlib import Path

import torch

POLICY_PREFIX = "policy."


def is_run_checkpoint(path: str) -> bool:
    """A lit_prefopt checkpoint file rather than a Hugging Face checkpoint directory."""
    return Path(path).is_file() and path.endswith(".ckpt")


def read_run_checkpoint(path: str) -> tuple[str, dict[str, torch.Tensor], dict | None]:
    """(the base model directory, the policy's weights, its LoRA settings or None) of a
    lit_prefopt checkpoint file."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "model_path" not in checkpoint:
        raise ValueError(f"{path} is not a lit_prefopt checkpoint (no model_path); point to a model directory")
    if checkpoint["model_path"] is None:
        raise ValueError(
            f"{path} was trained from a model built in memory (Python API), so it names no directory to take the "
            "architecture and tokenizer from: start from that run's save_pretrained directory instead"
        )
    weights = {
        name[len(POLICY_PREFIX):]: tensor
        for name, tensor in checkpoint["state_dict"].items()
        if name.startswith(POLICY_PREFIX)
    }
    lora = checkpoint.get("config", {}).get("model", {}).get("lora") or {}
    return checkpoint["model_path"], weights, (lora if int(lora.get("r", 0)) > 0 else None)
