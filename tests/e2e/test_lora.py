"""LoRA: only adapters train, the reference is the base model, the export is merged."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import AutoModelForCausalLM

from lit_prefopt.criteria.base import Criterion
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.lora import with_lora_adapters
from lit_prefopt.models.tiny import TinyLlama
from lit_prefopt.module import PreferenceModule
from lit_prefopt.optim import parameter_groups
from lit_prefopt.reference.source import LoRABaseWeights, choose_reference_source
from lit_prefopt.train import train

IDS = torch.tensor([[0, 5, 9, 33, 2, 7], [0, 5, 9, 40, 41, 2], [0, 8, 9, 33, 2, 7], [0, 8, 9, 40, 41, 2]])
BATCH = PreferenceBatch(
    input_ids=IDS,
    attention_mask=torch.ones_like(IDS),
    completion_mask=torch.tensor([[0, 0, 0, 1, 1, 1]] * 4, dtype=torch.bool),
    pair_weights=torch.ones(2),
)


class _NeedsReference(Criterion):
    needs_reference = True


def test_lora_reference_is_the_base_model_and_optimizer_sees_adapters_only(tiny_llama) -> None:
    checkpoint = TinyLlama(cache_dir=str(Path(tiny_llama.path).parents[1]), lora={"r": 4})
    module = PreferenceModule(checkpoint, _NeedsReference(), optimizer=partial(torch.optim.AdamW, lr=1e-2))
    module.policy = checkpoint.load_policy()
    source = choose_reference_source(module, SimpleNamespace(callbacks=[]))
    assert isinstance(source, LoRABaseWeights), "no second model is loaded under LoRA"
    source.configure(module)
    # Move the adapters away from their zero init so the policy differs from the base model.
    with torch.no_grad():
        for name, param in module.policy.named_parameters():
            if "lora_B" in name:
                param.normal_()
    reference, _ = source.logps(BATCH)
    base = tiny_llama.load_policy().eval()
    with torch.no_grad():
        expected = sequence_logprobs(base, BATCH)[0].chunk(2)[0]
        policy = sequence_logprobs(module.policy, BATCH)[0].chunk(2)[0]
    torch.testing.assert_close(reference, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(policy, expected), "the adapters change the policy"
    optimized = [p for group in parameter_groups(module.policy) for p in group["params"]]
    names = {id(p): n for n, p in module.policy.named_parameters()}
    assert optimized and all("lora_" in names[id(p)] for p in optimized)


def test_lora_run_changes_only_adapters_and_exports_merged_weights(compose, tiny_llama) -> None:
    cfg = compose("model.lora.r=4", "trainer.max_steps=3", "data.batch_size=4", "validate_before_training=false",
                  "data.val_files=null", "optimizer.lr=1e-2")
    train(cfg)
    run = Path(cfg.run_dir)
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    policy_state = {k[len("policy."):]: v for k, v in state.items() if k.startswith("policy.")}
    base = tiny_llama.load_policy()
    base_state = base.state_dict()
    for name, tensor in policy_state.items():
        if "lora_" in name:
            continue
        plain = name.replace("base_model.model.", "").replace(".base_layer", "")
        torch.testing.assert_close(tensor, base_state[plain], msg=f"frozen weight {name} changed")
    assert any("lora_B" in n and v.abs().sum() > 0 for n, v in policy_state.items()), "adapters trained"

    trained = with_lora_adapters(tiny_llama.load_policy(), {"r": 4, "alpha": 16})
    trained.load_state_dict(policy_state)
    exported = AutoModelForCausalLM.from_pretrained(run / "hf")
    assert not any("lora" in n for n, _ in exported.named_parameters()), "export is a plain checkpoint"
    with torch.no_grad():
        torch.testing.assert_close(exported(input_ids=IDS).logits, trained.eval()(input_ids=IDS).logits, atol=1e-5, rtol=0)

    # A later run can start from this run's checkpoint file: the adapters are merged on load.
    from lit_prefopt.models.checkpoint import HFCheckpoint

    restarted = HFCheckpoint(path=str(run / "checkpoints" / "last.ckpt")).load_policy().eval()
    assert not any("lora" in n for n, _ in restarted.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(restarted(input_ids=IDS).logits, exported(input_ids=IDS).logits, atol=1e-5, rtol=0)
