"""A per-device memory estimate for the composed config, printed before anything is loaded.

`python -m lit_prefopt ... plan=true` prints it and exits. Nothing is read but config.json: the
parameter count comes from building the model on the meta device (no storage), so a 70B plan
takes seconds on a laptop. Notation: P parameters (policy), P_t of them trainable (LoRA: the
adapters), b bytes per parameter (`model.dtype`), b_ref the reference's, a bytes per activation
(2 under bf16/fp16 precision, else b), S the number of processes a parameter is sharded over
(world size under `strategy=fsdp`, `strategy.shard_size` under `hsdp`, 1 otherwise), and a
micro-batch of N tokens: 2 x `data.batch_size` rows of `data.max_seq_len` (shared-prompt rows
hold a pair each, up to twice as long; the same N), or `data.max_num_tokens`. Shapes are worst
cases: every row as long as the cap allows.

Terms (bytes per device):
- parameters = P b / S. Under FSDP also `gathered`: one decoder layer unsharded at a time, plus
  its prefetched successor, plus the root's embeddings and LM head, (2 P_layer + P_root) b.
- gradients = P_t b / S: FSDP reduce-scatters them into shards. DDP keeps a second copy in its
  all-reduce buckets (P_t b more).
- optimizer = AdamW's two moments, 2 P_t b / S (kept in the parameters' dtype); SGD's momentum
  buffer, P_t b / S, when momentum > 0. A step that is not `fused` allocates one more P_t b / S
  temporary (AdamW's sqrt of the second moment; SGD's decayed gradient when weight_decay > 0).
- reference = P b_ref / S, loaded only when the criterion needs one and LoRA does not provide it
  (data with reference scores needs none; this plan does not read the data).
- activations: what autograd keeps for backward. A Llama-style decoder layer (RMSNorm, q/k/v/o
  projections, rotary, SDPA, gated MLP) saves per token: both norms' inputs and outputs (2 x 2h),
  the normed inputs of the attention and MLP projections (shared, 2 x h), q, k and v after
  rotary and GQA repetition (3h), SDPA's output and o_proj's contiguous input (2h), and the MLP's
  gate, SiLU, up and product (4i): (11h + 4i) a per token per layer, to within 1% of what the
  saved-tensor hooks report for Llama. Eager attention also keeps each head's probabilities,
  heads x row length a per token per layer. Outside the layers: the final norm and the LM head's
  input, 3h a per token. With `model.gradient_checkpointing` a layer keeps only its input and the
  rotary tables it is called with (1.5h a per token, measured), and backward recomputes one layer
  at a time; the last layer is not checkpointed (its activations are the backward's first need):
  (1.5h (L - 1) + 11h + 4i + 3h) a N.
- lm_head: `model.chunked_logprobs=C` makes C x V logits at a time, float32, with the log-sum-exp and
  the softmax computed in place: 4 C V, plus the matmul's result in the activation dtype when that is
  not float32, (a + 4) C V, and in backward the float32 gradient of the head's weight, 4 V h; plus
  the softmax a small head keeps for backward (4 N V, counted up to its 64 MiB cap). Without
  chunking the N x V logits exist whole, with a float32 copy and exp: (a + 8) N V.
- attention_masks: a 4D mask per micro-batch, rows x (row length)^2: booleans (1 byte) for SDPA
  (float32, 4 bytes, for shared-prompt or packed rows on CPU: an additive mask), the activation
  dtype for eager attention. Shared-prompt rows are twice as long, so half as many
  rows hold four times the elements; packed rows are `data.pack_length` long. `flex_attention`
  (a block mask) and `varlen` (no mask) hold none worth counting.

Peak = parameters + gathered + optimizer + reference + max(activations + lm_head +
attention_masks, gradients + step temporaries): activations are freed as backward makes
gradients, and the optimizer step runs after both (the module frees the gradients as soon as the step is applied).
With `trainer.accumulate_grad_batches` > 1 the gradients are held while later micro-batches run,
so they add to the activations instead. The runtime itself (CUDA context, kernels,
allocator caching, Python) comes on top; the test compares the estimate with measured CPU runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, LlamaConfig, PretrainedConfig

from lit_prefopt.kernels.chunked_head import KEEP_SOFTMAX_BYTES
from lit_prefopt.models.checkpoint import DTYPES, HFCheckpoint
from lit_prefopt.models.lora import with_lora_adapters
from lit_prefopt.models.sharding import meta_model
from lit_prefopt.models.tiny import TinyLlama

GIB = 1024**3


@dataclass
class MemoryPlan:
    """The estimate's terms in bytes per device, and what they were computed for."""

    world_size: int
    shard_over: int
    parameter_count: int
    trainable_count: int
    terms: dict[str, int] = field(default_factory=dict)
    activations_without_checkpointing: int = 0
    activations_with_checkpointing: int = 0
    step_temporaries: int = 0
    accumulates: bool = False

    @property
    def total(self) -> int:
        t = self.terms
        resident = t["parameters"] + t["gathered"] + t["optimizer"] + t["reference"]
        forward = t["activations"] + t["lm_head"] + t["attention_masks"]
        if self.accumulates:  # later micro-batches run while the earlier ones' gradients are held
            return resident + t["gradients"] + max(forward, self.step_temporaries)
        return resident + max(forward, t["gradients"] + self.step_temporaries)

    def describe(self) -> str:
        lines = [f"Memory plan per device: {self.parameter_count / 1e6:.1f}M parameters "
                 f"({self.trainable_count / 1e6:.1f}M trainable), {self.world_size} processes, "
                 f"sharded over {self.shard_over}"]
        lines += [f"  {name:<16}{_gib(size)}" for name, size in self.terms.items()]
        lines.append(f"  {'(step temps)':<16}{_gib(self.step_temporaries)}")
        lines.append(f"  activations: {_gib(self.activations_without_checkpointing).strip()} without, "
                     f"{_gib(self.activations_with_checkpointing).strip()} with activation checkpointing")
        lines.append(f"  {'peak':<16}{_gib(self.total)}  (plus the runtime: CUDA context, allocator cache)")
        return "\n".join(lines)


def _gib(size: int) -> str:
    return f"{size / GIB:10.3f} GiB"


def plan_memory(cfg: DictConfig) -> MemoryPlan:
    """The estimate for the composed training config (see the module docstring for each term)."""
    from hydra.utils import instantiate

    checkpoint: HFCheckpoint = instantiate(cfg.model)
    criterion = instantiate(cfg.criterion)
    config = model_config(checkpoint)
    total, trainable, root = count_parameters(config, checkpoint)
    world, shard = world_and_shard(cfg)
    strategy = str(cfg.strategy.get("_target_", cfg.strategy.get("name", "")))

    b = DTYPES[checkpoint.dtype].itemsize
    b_ref = DTYPES[str(cfg.model.get("reference_dtype") or checkpoint.dtype)].itemsize
    a = 2 if str(cfg.trainer.precision).startswith(("bf16", "16")) else b
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    heads, vocab = config.num_attention_heads, config.vocab_size

    data = cfg.data
    shared = bool(data.get("share_prompt", False))
    row_length = int(data.get("pack_length") or 0) or int(data.max_seq_len) * (2 if shared else 1)
    budget = data.get("max_num_tokens")
    tokens = int(budget) if budget else 2 * int(data.batch_size) * int(data.max_seq_len)
    eager = checkpoint.attn_implementation == "eager"

    per_layer = (11 * h + 4 * i + (heads * row_length if eager else 0)) * a
    outside = 3 * h * a
    without = tokens * (layers * per_layer + outside)
    with_ckpt = tokens * ((layers - 1) * 3 * h * a // 2 + per_layer + outside)
    chunk = checkpoint.chunked_logprobs
    chunk_bytes = 4 + (a if a != 4 else 0)
    kept_softmax = min(4 * tokens * vocab, KEEP_SOFTMAX_BYTES)  # at most; scored tokens are fewer than tokens
    head = chunk_bytes * min(chunk, tokens) * vocab + 4 * vocab * h + kept_softmax if chunk else (a + 8) * tokens * vocab
    dense = checkpoint.attn_implementation in ("sdpa", "eager")
    segment_rule = shared or bool(data.get("pack", False))  # our mask, not transformers' own
    masks = tokens * row_length * (a if eager else 4 if segment_rule and _runs_on_cpu(cfg) else 1) if dense else 0

    optimizer = instantiate(cfg.optimizer)
    kind = getattr(optimizer, "func", optimizer).__name__.lower()
    options = getattr(optimizer, "keywords", {})
    states = 2 if "adam" in kind else int(float(options.get("momentum", 0.0)) > 0)
    temps = 1 if "adam" in kind else int(float(options.get("weight_decay", 0.0)) > 0)
    temps = 0 if options.get("fused") else temps
    ddp_buckets = trainable * b if strategy.endswith("DDPStrategy") else 0
    layer_params = (total - root) // max(layers, 1)
    reference = total * b_ref // shard if criterion.needs_reference and not checkpoint.uses_lora else 0

    plan = MemoryPlan(world_size=world, shard_over=shard, parameter_count=total, trainable_count=trainable)
    plan.terms = {
        "parameters": total * b // shard,
        "gathered": (2 * layer_params + root) * b if shard > 1 else 0,
        "gradients": trainable * b // shard + ddp_buckets,
        "optimizer": states * trainable * b // shard,
        "reference": reference,
        "activations": with_ckpt if checkpoint.gradient_checkpointing else without,
        "lm_head": head,
        "attention_masks": masks,
    }
    plan.activations_without_checkpointing = without
    plan.activations_with_checkpointing = with_ckpt
    plan.step_temporaries = temps * trainable * b // shard
    plan.accumulates = int(cfg.trainer.get("accumulate_grad_batches", 1)) > 1
    return plan


def model_config(checkpoint: HFCheckpoint) -> PretrainedConfig:
    """config.json of `model.path` (or, for the tiny model not built yet, the config it will have)."""
    directory = Path(checkpoint.base_directory)
    if (directory / "config.json").is_file():
        return AutoConfig.from_pretrained(
            directory, trust_remote_code=checkpoint.trust_remote_code, local_files_only=True
        )
    if isinstance(checkpoint, TinyLlama):
        return LlamaConfig(**checkpoint.architecture, tie_word_embeddings=False)
    raise FileNotFoundError(f"model.path={checkpoint.path!r} has no config.json to plan from")


def count_parameters(config: PretrainedConfig, checkpoint: HFCheckpoint) -> tuple[int, int, int]:
    """(all, trainable, outside the decoder layers) parameters, from a model on the meta device."""
    model: Any = meta_model(config, trust_remote_code=checkpoint.trust_remote_code)
    total = sum(p.numel() for p in model.parameters())
    in_layers = sum(p.numel() for layer in model.get_decoder().layers for p in layer.parameters())
    if checkpoint.uses_lora:
        with torch.device("meta"):
            model = with_lora_adapters(model, checkpoint.lora)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        return total, trainable, total - in_layers
    return total, total, total - in_layers


def world_and_shard(cfg: DictConfig) -> tuple[int, int]:
    """Processes in the run, and how many of them share (shard) each parameter."""
    devices = cfg.trainer.devices
    if OmegaConf.is_list(devices):
        devices = len(devices)
    elif not (isinstance(devices, int) and devices > 0):  # "auto" or -1: every device of the node
        cpu = cfg.trainer.get("accelerator") == "cpu" or not torch.cuda.is_available()
        devices = 1 if cpu else torch.cuda.device_count()
    world = devices * int(cfg.trainer.get("num_nodes", 1))
    target = str(cfg.strategy.get("_target_", ""))
    if target.endswith("HybridShardedStrategy"):
        shard = int(cfg.strategy.get("shard_size") or devices)
        if world % shard:
            raise ValueError(f"strategy.shard_size={shard} must divide the number of processes, {world}")
        return world, shard
    return world, world if target.endswith("FullyShardedStrategy") else 1


def _runs_on_cpu(cfg: DictConfig) -> bool:
    """Whether `trainer.accelerator` puts this config on CPU (`auto`: no CUDA on this machine)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
