"""`data.pack=true` changes how a batch is laid out, never what is trained: every criterion, the
reference cache, token-budget batches and chat records give the unpacked values within 1e-5.

The batches come from the real data module on the shipped sample (short pairs, so several share a
packed row); the models are the tiny Llama. A packed batch holds the same pairs as its unpacked
twin, so losses, reference scores and metrics must agree pair for pair.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from lit_prefopt.callbacks.reference_cache import pair_keys, score_pairs
from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.datamodule import PreferenceDataModule
from lit_prefopt.kernels.attention.segments import PROMPT
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.checkpoint import HFCheckpoint
from lit_prefopt.module import PreferenceModule
from lit_prefopt.paths import sample_data_path
from lit_prefopt.reference.source import LiveReference
from tests.criteria.test_configs import OPTIONS, criterion_node

SAMPLE = str(sample_data_path("train.jsonl"))
# Every conf/criterion option is checked; the core four in the fast suite, the rest marked slow.
CORE = {"dpo", "simpo", "cpo", "orpo"}
CRITERIA = [pytest.param(name, marks=() if name in CORE else pytest.mark.slow) for name in OPTIONS]


def batches(tokenizer, files: list[str], pack: bool, count: int, **settings) -> list[PreferenceBatch]:
    """The first `count` training batches of the data module, unshuffled."""
    data = PreferenceDataModule(train_files=files, shuffle=False, pack=pack, **settings)
    data.set_tokenizer(tokenizer)
    loader = iter(data.train_dataloader())
    return [next(loader) for _ in range(count)]


def packed_rows(batch: PreferenceBatch) -> int:
    return batch.shared_prefix.input_ids.shape[0]


@pytest.fixture(scope="module")
def models(tiny_llama) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The tiny policy and a reference that differs from it (so reference margins are not zero)."""
    checkpoint = HFCheckpoint(path=tiny_llama.path)
    policy, reference = checkpoint.load_policy(), checkpoint.load_reference()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return policy, reference.eval()


@pytest.fixture(scope="module")
def sample_batches(tiny_llama) -> dict[bool, PreferenceBatch]:
    """One batch of 4 sample pairs, unpacked (4 shared rows) and packed (fewer rows)."""
    tokenizer = tiny_llama.load_tokenizer()
    out = {pack: batches(tokenizer, [SAMPLE], pack, 1, batch_size=4, max_seq_len=64)[0] for pack in (False, True)}
    assert packed_rows(out[False]) == 4 and packed_rows(out[True]) < 4, "the sample's pairs must share packed rows"
    return out


def _module(tiny_llama, name: str, policy: torch.nn.Module, reference: torch.nn.Module) -> PreferenceModule:
    module = PreferenceModule(HFCheckpoint(path=tiny_llama.path), instantiate(criterion_node(name)),
                              optimizer=torch.optim.SGD)
    module.policy = policy
    if module.criterion.needs_reference:
        module.reference_source = LiveReference(None, 0, reference)
    return module


def _two_steps(module: PreferenceModule, batch: PreferenceBatch) -> list[torch.Tensor]:
    """Per-pair losses of two SGD steps on the same batch (the second after one update)."""
    optimizer = torch.optim.SGD(module.policy.parameters(), lr=0.5)
    losses = []
    for _ in range(2):
        optimizer.zero_grad()
        per_pair, weights, _ = module._pair_results(batch)
        (per_pair * weights).sum().div(weights.sum()).backward()
        optimizer.step()
        losses.append(per_pair.detach())
    return losses


@pytest.mark.parametrize("name", CRITERIA)
def test_every_criterion_trains_the_same_packed(name: str, tiny_llama, models, sample_batches) -> None:
    """Each conf/criterion option: the same per-pair losses at step 0 and after one update."""
    policy, reference = models
    runs = {}
    for pack, batch in sample_batches.items():
        module = _module(tiny_llama, name, copy.deepcopy(policy).train(), reference)
        runs[pack] = _two_steps(module, batch)
    for unpacked, packed in zip(runs[False], runs[True]):
        assert torch.isfinite(packed).all()
        torch.testing.assert_close(packed, unpacked, atol=1e-5, rtol=1e-5)


def test_token_budget_batches_and_reference_scores_are_the_same_packed(tiny_llama, models) -> None:
    """`data.max_num_tokens` picks the same pairs with packing (their padded cost is counted, not the
    packed one); packed they take fewer rows, and the reference scores a cache would store from
    them are the unpacked ones, so a packed and an unpacked run share one cache entry."""
    _, reference = models
    tokenizer = tiny_llama.load_tokenizer()
    budget = dict(max_num_tokens=1024, max_seq_len=128, bucket_pool=64)
    plain, packed = (batches(tokenizer, [SAMPLE], pack, 3, **budget) for pack in (False, True))
    for a, b in zip(plain, packed):
        assert a.ids == b.ids and torch.equal(a.input_ids, b.input_ids)
        assert a.input_ids.numel() <= 1024
        assert packed_rows(b) < packed_rows(a) and b.shared_prefix.input_ids.shape[1] <= 256
    assert sum(a.num_pairs for a in plain) > 3 * 4, "the budget must hold more than a few pairs per batch"
    live = LiveReference(None, 0, reference)
    plain_scores, packed_scores = score_pairs(live, plain, torch.device("cpu")), score_pairs(live, packed, torch.device("cpu"))
    assert plain_scores.keys() == packed_scores.keys() == {k for batch in plain for k in pair_keys(batch)}
    for key, values in plain_scores.items():
        assert packed_scores[key] == pytest.approx(values, abs=1e-5)


def test_chat_records_pack_with_the_same_logprobs(tiny_llama, models, tmp_path: Path) -> None:
    """Chat records ({prompt, chosen, rejected} message lists) rendered by the chat template, with
    prompts of different lengths sharing packed rows, against the plain padded path (one sequence per
    row, no prompt sharing).

    Rotary attention depends only on position differences, so positions that ran on across a row
    (pair k starting where pair k-1 ended) would leave every log-prob unchanged: the positions are
    checked directly, as restarting at 0 for each pair's prompt and at the prompt's end for its
    rejected completion. The log-probs catch a restart at the wrong place (another pair's prompt
    length), which the different prompt lengths make visible.
    """
    policy, _ = models
    system = [{"role": "system", "content": "Be brief."}]
    turns = [{"role": "user", "content": "Hello there."}, {"role": "assistant", "content": "Hello, ask away."}]
    prompts = [[], system, system + turns, turns + turns]
    records = [
        {"prompt": prefix + [{"role": "user", "content": f"Question {i}: why {word}?"}],
         "chosen": [{"role": "assistant", "content": f"Because {word} is kind."}],
         "rejected": [{"role": "assistant", "content": f"No idea about {word}, sorry, truly none at all."}]}
        for i, (word, prefix) in enumerate(zip(["rain", "snow", "wind", "fog"], prompts))
    ]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    tokenizer = tiny_llama.load_tokenizer()
    plain = batches(tokenizer, [str(path)], False, 1, batch_size=4, max_seq_len=256, share_prompt=False)[0]
    packed = batches(tokenizer, [str(path)], True, 1, batch_size=4, max_seq_len=256)[0]
    assert plain.shared_prefix is None and packed_rows(packed) < 4
    segments = packed.shared_prefix.segments
    prompt_lengths = []
    for p in range(4):
        row = int((segments.pair == p).any(dim=1).nonzero()[0])
        here = segments.pair[row] == p
        kind, completion, positions = segments.kind[row, here], segments.completion[row, here], segments.positions[row, here]
        prompt_length = int((kind == PROMPT).sum())
        assert prompt_length == int(plain.completion_mask[p].nonzero()[0]), f"pair {p}: its prompt is the shared part"
        chosen_length = int((completion == 0).sum())
        rejected_length = int((completion == 1).sum())
        expected = torch.cat([torch.arange(prompt_length + chosen_length),
                              torch.arange(prompt_length, prompt_length + rejected_length)])
        assert torch.equal(positions, expected), f"pair {p}: positions must restart per pair"
        prompt_lengths.append((row, int(here.nonzero()[0]), prompt_length))
    fullest = max((row for row, _, _ in prompt_lengths), key=[row for row, _, _ in prompt_lengths].count)
    shared = [(column, length) for row, column, length in prompt_lengths if row == fullest]
    assert len(shared) > 1 and len({n for _, n in shared}) == len(shared), (
        f"one packed row must hold pairs of different prompt lengths: (row, column, prompt length) {prompt_lengths}")
    with torch.no_grad():
        expected_sums, expected_lengths = sequence_logprobs(policy, plain)
        sums, lengths = sequence_logprobs(policy, packed)
    assert (expected_lengths > 0).all()
    torch.testing.assert_close(sums, expected_sums, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lengths, expected_lengths)


@pytest.mark.slow
def test_packed_run_validates_and_resumes_like_an_unpacked_run(compose, tmp_path: Path) -> None:
    """Through the entry: validation and training metrics equal the unpacked run's, and a packed run
    stopped at step 3 and resumed with ckpt_path=last continues with the same batches (the data
    position is restored) to the same weights and losses as a packed run straight through."""
    from lit_prefopt.train import train
    from tests.e2e.test_train_run import column, read_metrics

    common = ("scheduler=constant", "data.batch_size=4", "data.max_seq_len=64", "export_hf=false",
              "trainer.val_check_interval=3", "trainer.limit_val_batches=2", "checkpoint.every_n_steps=3")
    runs = {"plain": ("data.pack=false", "trainer.max_steps=6"), "packed": ("data.pack=true", "trainer.max_steps=6")}
    for name, overrides in runs.items():
        train(compose(*common, *overrides, run_dir=tmp_path / name))
    train(compose(*common, "data.pack=true", "trainer.max_steps=3", run_dir=tmp_path / "resumed"))
    train(compose(*common, "data.pack=true", "trainer.max_steps=6", "ckpt_path=last", run_dir=tmp_path / "resumed"))

    plain, packed, resumed = (read_metrics(tmp_path / name) for name in ("plain", "packed", "resumed"))
    for metric in ("val/loss", "val/rewards/margin", "val/logps/chosen", "train/loss", "train/logps/rejected"):
        assert len(column(packed, metric)) >= 3, metric
        assert column(packed, metric) == pytest.approx(column(plain, metric), abs=1e-5), metric
    assert column(resumed, "train/loss") == pytest.approx(column(packed, "train/loss"), abs=1e-6)
    straight = torch.load(tmp_path / "packed" / "checkpoints" / "last.ckpt", weights_only=True)
    again = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    for key, tensor in straight["state_dict"].items():
        torch.testing.assert_close(again["state_dict"][key], tensor, atol=1e-6, rtol=0, msg=key)
