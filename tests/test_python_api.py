"""The Python API: one LightningModule per criterion, built without a config, trained by a plain
Trainer, and the README's example run as written (on the tiny model and the bundled sample)."""

from __future__ import annotations

import re
from pathlib import Path

import lightning
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import lit_prefopt
from lit_prefopt import DPOModule, ORPOModule, PreferenceDataModule, SimPOModule
from lit_prefopt.criteria import CRITERIA
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.criterion_modules import MODULES, module_class
from lit_prefopt.models.run_checkpoint import read_run_checkpoint
from lit_prefopt.module import PreferenceModule
from lit_prefopt.paths import sample_data_path

REPO = Path(__file__).resolve().parents[1]
# The modules issue 12 asks for by name; a criterion added to the registry adds its own.
REQUESTED = {
    "DPOModule", "SimPOModule", "CPOModule", "ORPOModule", "IPOModule", "AlphaPOModule", "APOModule",
    "BCOPairModule", "DiscoPOPModule", "EXOPairModule", "FDivergenceDPOModule", "HingeModule",
    "NCAPairModule", "RobustDPOModule", "SLiCModule", "SPPOHardModule", "WeightedSumModule",
}


def test_every_registered_criterion_has_its_module_exported() -> None:
    assert set(MODULES) == {f"{cls.__name__}Module" for cls in CRITERIA.values()}
    assert REQUESTED <= set(MODULES)
    for name, cls in MODULES.items():
        assert getattr(lit_prefopt, name) is cls
        assert cls.criterion_class.__name__ + "Module" == name
        # One base: no step, metric or reference code of their own.
        for hook in ("training_step", "validation_step", "pair_logps", "configure_model", "on_before_optimizer_step"):
            assert getattr(cls, hook) is getattr(PreferenceModule, hook)


def test_hyperparameters_go_by_their_config_names() -> None:
    """SimPO: gamma = gamma_beta_ratio * beta = 0.4 * 2.5 = 1.0; ORPO's `lambda` is a Python keyword."""
    simpo = SimPOModule(model="unused-dir", beta=2.5, gamma_beta_ratio=0.4)
    assert simpo.criterion.gamma == pytest.approx(1.0)
    assert ORPOModule(model="unused-dir", **{"lambda": 0.2}).criterion.lambda_ == 0.2
    with pytest.raises(TypeError, match=r"unknown hyperparameters \['bta'\]"):
        DPOModule(model="unused-dir", bta=0.1)
    with pytest.raises(ValueError, match=r"criterion\.beta"):
        DPOModule(model="unused-dir", beta=-1.0)
    with pytest.raises(TypeError, match="DPOModule trains DPO"):
        DPOModule(model="unused-dir", criterion=simpo.criterion)


def test_lr_sets_adamws_learning_rate() -> None:
    weights = [torch.nn.Parameter(torch.zeros(2))]
    optimizer = DPOModule(model="unused-dir", lr=1e-3).optimizer_factory(weights)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["lr"] == 1e-3
    sgd = DPOModule(model="unused-dir", optimizer=lambda params: torch.optim.SGD(params, lr=0.5))
    assert isinstance(sgd.optimizer_factory(weights), torch.optim.SGD)
    with pytest.raises(ValueError, match="lr inside optimizer"):
        DPOModule(model="unused-dir", lr=1e-3, optimizer=lambda params: torch.optim.SGD(params, lr=0.5))


def test_unregistered_criterion_gets_a_module_of_its_own() -> None:
    class ScaledDPO(DPO):
        pass

    assert module_class(DPO) is DPOModule
    made = module_class(ScaledDPO)
    assert made.__name__ == "ScaledDPOModule" and made.criterion_class is ScaledDPO
    assert module_class(ScaledDPO) is made


def test_model_built_in_memory_asks_for_a_tokenizer() -> None:
    config = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, vocab_size=64)
    with pytest.raises(ValueError, match="tokenizer="):
        _ = DPOModule(model=LlamaForCausalLM(config)).tokenizer


def readme_example() -> str:
    """The first python block of README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_example_trains_and_saves(tiny_llama, tmp_path: Path, monkeypatch) -> None:
    """Run as written, with the tiny model, the bundled sample and 2 steps in place of the
    user's paths and 1,000 steps; the saved directory loads and differs from the start."""
    replacements = {
        '"/ckpts/Llama-3.2-1B-Instruct"': repr(tiny_llama.path),
        '"/data/prefs/train.jsonl"': repr(str(sample_data_path("train.jsonl"))),
        '"/data/prefs/valid.jsonl"': repr(str(sample_data_path("valid.jsonl"))),
        "max_steps=1000": "max_steps=2, enable_progress_bar=False",
        '"outputs/dpo_from_python"': repr(str(tmp_path / "hf")),
    }
    code = readme_example()
    for old, new in replacements.items():
        assert code.count(old) == 1, f"README's example no longer contains {old}"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # the plain Trainer writes lightning_logs/ here
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["trainer"].global_step == 2
    assert isinstance(namespace["module"], DPOModule)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    start = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    assert any(not torch.equal(a, b) for a, b in zip(trained.state_dict().values(), start.state_dict().values()))


def _fit(module: DPOModule, steps: int, ckpt_path: Path | None = None) -> lightning.Trainer:
    data = PreferenceDataModule(train_files=[str(sample_data_path("train.jsonl"))], batch_size=2, shuffle=False)
    trainer = lightning.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path if ckpt_path and ckpt_path.exists() else None)
    return trainer


@pytest.mark.slow
def test_loaded_model_reference_is_a_frozen_copy_and_resume_checks_it(tiny_llama, tmp_path: Path) -> None:
    """A loaded policy with the reference omitted trains against a frozen copy of itself; its
    checkpoint resumes with the same starting model and refuses another one."""
    start = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    initial = {k: v.clone() for k, v in start.state_dict().items()}
    module = DPOModule(model=start, lr=1e-2)
    trainer = _fit(module, steps=2)
    assert module.policy is start and module.reference is not start
    assert all(torch.equal(module.reference.state_dict()[k], v) for k, v in initial.items())
    assert any(not torch.equal(start.state_dict()[k], v) for k, v in initial.items())
    assert not any(p.requires_grad for p in module.reference.parameters())
    checkpoint = tmp_path / "last.ckpt"
    trainer.save_checkpoint(checkpoint)

    resumed = DPOModule(model=AutoModelForCausalLM.from_pretrained(tiny_llama.path), lr=1e-2)
    assert _fit(resumed, steps=3, ckpt_path=checkpoint).global_step == 3

    other = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    with pytest.raises(ValueError, match="reference"):
        _fit(DPOModule(model=other, lr=1e-2), steps=3, ckpt_path=checkpoint)


def test_checkpoint_of_a_policy_built_in_memory_cannot_start_a_run(tmp_path: Path) -> None:
    """Its `model_path` is None (no directory to rebuild the architecture from): a clear refusal."""
    path = tmp_path / "last.ckpt"
    torch.save({"model_path": None, "state_dict": {}}, path)
    with pytest.raises(ValueError, match="built in memory"):
        read_run_checkpoint(str(path))


def test_policy_and_reference_mix_directories_and_objects(tiny_llama) -> None:
    """Each side is loaded from its directory or used as given; only an object reference is
    fingerprinted (`reference_given`), a directory one is reloaded from its path on resume."""
    given = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    by_path = DPOModule(model=tiny_llama.path, reference_model=given).checkpoint
    assert by_path.load_reference() is given and not any(p.requires_grad for p in given.parameters())
    assert by_path.load_policy() is not given and by_path.reference_given
    assert by_path.base_directory == tiny_llama.path
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama.path)
    by_object = DPOModule(model=policy, reference_model=tiny_llama.path).checkpoint
    assert by_object.load_policy() is policy and not by_object.reference_given
    reference = by_object.load_reference()
    assert reference is not policy and torch.equal(reference.lm_head.weight, policy.lm_head.weight)


@pytest.mark.slow
def test_plain_trainer_validates_before_and_during_fit(tiny_llama) -> None:
    """Lightning's defaults: `validate()` runs under inference mode, fit's validation under no_grad;
    the metric states the first leaves behind must not break the second."""
    module = SimPOModule(model=tiny_llama.path, lr=1e-3)
    data = PreferenceDataModule(train_files=[str(sample_data_path("train.jsonl"))],
                                val_files=[str(sample_data_path("valid.jsonl"))], batch_size=2)
    trainer = lightning.Trainer(max_steps=1, val_check_interval=1, limit_val_batches=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    before = trainer.validate(module, datamodule=data, verbose=False)[0]["val/loss"]
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 1 and trainer.callback_metrics["val/loss"] != before
