"""One TRL training run in its own process: `python -m benchmarks.trl_runner SPEC.json`.

TRL keeps its defaults except what the comparison fixes: model and pairs, 8 pairs per step,
the 512-token cap, float32 on CPU (or, from the GPU check, float32 weights with bf16 autocast
on a GPU: `bf16` and `use_cpu` in the spec), the learning rate, the step count, the criterion's
hyperparameters (so both optimize the same objective) and whether gradient checkpointing is on
(reported both ways). Checkpoint saving and reporting integrations are off, as in lit_prefopt's
run, so neither pays for I/O inside the timed steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainerCallback

from benchmarks.step_log import EncodedTokens, StepLog

# Criterion -> (trainer module, trainer class, config class, config settings that define it).
TRAINERS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "dpo": ("trl", "DPOTrainer", "DPOConfig", {"beta": 0.1}),
    "simpo": ("trl.experimental.cpo", "CPOTrainer", "CPOConfig", {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0}),
    "cpo": ("trl.experimental.cpo", "CPOTrainer", "CPOConfig", {"beta": 0.1, "cpo_alpha": 1.0}),
    "orpo": ("trl.experimental.orpo", "ORPOTrainer", "ORPOConfig", {"beta": 0.1}),
}


def trl_classes(criterion: str) -> tuple[type, type, dict[str, Any]]:
    import importlib

    module_name, trainer_name, config_name, settings = TRAINERS[criterion]
    module = importlib.import_module(module_name)
    return getattr(module, trainer_name), getattr(module, config_name), settings


def load_dataset(path: str) -> Dataset:
    """The lit_prefopt JSONL schema renamed to TRL's prompt/chosen/rejected columns."""
    rows = [json.loads(line) for line in open(path, encoding="utf-8")]
    return Dataset.from_list([{"prompt": r["src"], "chosen": r["tgt_chosen"], "rejected": r["tgt_rejected"]} for r in rows])


def build_trainer(spec: dict[str, Any]):
    """A TRL trainer for `spec` (criterion, model, data, steps, lr, batch size, max_len, gc)."""
    trainer_cls, config_cls, settings = trl_classes(spec["criterion"])
    args = config_cls(
        output_dir=spec["output_dir"],
        per_device_train_batch_size=spec["batch_size"],
        max_length=spec["max_seq_len"],
        max_steps=spec["steps"],
        learning_rate=spec["lr"],
        gradient_checkpointing=spec["gradient_checkpointing"],
        bf16=spec.get("bf16", False),
        use_cpu=spec.get("use_cpu", True),
        model_init_kwargs={"dtype": torch.float32},
        save_strategy="no",
        report_to=[],
        seed=spec.get("seed", 0),
        **settings,
    )
    return trainer_cls(model=spec["model"], args=args, train_dataset=load_dataset(spec["data"]))


class CountingCollator:
    """Wraps TRL's own collator to count each batch's pairs, non-padding tokens and encoded positions.

    Tokens are every attention-masked position of the chosen and rejected rows, so the prompt
    counts twice, exactly as `PreferenceBatch.num_tokens` counts lit_prefopt's batches; TRL
    encodes exactly those rows. DPOTrainer's collator gives them as one [2B, L] batch; the CPO
    and ORPO trainers pad chosen and rejected to the longer of the two and stack them, so the
    encoded batch is [2B, max(L_chosen, L_rejected)] either way. `compact_head`: the LM head runs
    on completion positions only (DPOTrainer's fused head where Triton runs), else on every one.
    """

    def __init__(self, collate, compact_head: bool) -> None:
        self.collate = collate
        self.compact_head = compact_head
        self.batches: list[tuple[int, int, EncodedTokens]] = []

    def __call__(self, features: list[dict]) -> dict:
        batch = self.collate(features)
        masks = [v for k, v in batch.items() if k.endswith("attention_mask") and not k.startswith("prompt")]
        tokens = sum(int(mask.sum()) for mask in masks)
        positions = sum(mask.shape[0] for mask in masks) * max(mask.shape[1] for mask in masks)
        head = int(batch["completion_mask"].sum()) if self.compact_head else tokens
        self.batches.append((len(features), tokens, EncodedTokens(positions, tokens, head)))
        return batch


def fused_head_compacts(criterion: str, device: torch.device) -> bool:
    """Whether TRL's LM head skips the prompt: DPOTrainer's fused head scores only completion
    positions where Triton runs (CUDA, XPU) and every position elsewhere; the CPO and ORPO
    trainers compute full logits."""
    from trl.kernels.chunked_logprob import _use_triton

    return criterion == "dpo" and _use_triton(device)


class StepTimer(TrainerCallback):
    """Records each optimizer step's end with the pairs and tokens of the batch it consumed."""

    def __init__(self, counter: CountingCollator, log: StepLog) -> None:
        self.counter = counter
        self.log = log

    def on_step_end(self, args, state, control, **kwargs) -> None:
        self.log.record(*self.counter.batches[len(self.log.ends)])


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_flush_denormal(spec.get("flush_denormal", True))
    trainer = build_trainer(spec)
    counter = CountingCollator(trainer.data_collator, compact_head=fused_head_compacts(spec["criterion"], trainer.args.device))
    trainer.data_collator = counter
    log = StepLog()
    trainer.add_callback(StepTimer(counter, log))
    trainer.train()
    log.write(Path(spec["result"]))


if __name__ == "__main__":
    main(sys.argv[1])
