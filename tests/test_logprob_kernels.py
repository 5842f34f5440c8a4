"""The log-prob kernels (shared prompt prefix, chunked LM head) against the plain padded path.

Each must give the criteria the same (sums, lengths) and the policy the same gradients, within
1e-5 in float32, so the levers can never change what is optimized.
"""

from __future__ import annotations

import pytest
import torch

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.data.shared_prefix import share_prompts
from lit_prefopt.kernels.chunked_head import ChunkedHeadLogprobs
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.checkpoint import HFCheckpoint

PAD = 0


def _batch(prompts: list[int], chosen: list[int], rejected: list[int], vocab: int, seed: int = 0) -> PreferenceBatch:
    """Random pairs with the given prompt/completion lengths, right-padded into 2B rows."""
    generator = torch.Generator().manual_seed(seed)
    rows, scored = [], []
    prompt_ids = [torch.randint(4, vocab, (n,), generator=generator).tolist() for n in prompts]
    for lengths in (chosen, rejected):
        for prompt, n in zip(prompt_ids, lengths):
            rows.append(prompt + torch.randint(4, vocab, (n,), generator=generator).tolist())
            scored.append([False] * len(prompt) + [True] * n)
    width = max(len(r) for r in rows)
    return PreferenceBatch(
        input_ids=torch.tensor([r + [PAD] * (width - len(r)) for r in rows]),
        attention_mask=torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows]),
        completion_mask=torch.tensor([s + [False] * (width - len(s)) for s in scored]),
        pair_weights=torch.ones(len(prompts)),
    )


def _sums_and_grads(model: torch.nn.Module, batch: PreferenceBatch, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    model.zero_grad()
    sums, lengths = sequence_logprobs(model, batch, chunk_size)
    # A loss that weights every sequence differently, so a misplaced token would show.
    (sums * torch.linspace(0.5, 1.5, sums.numel())).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return sums.detach(), lengths, grads


@pytest.fixture(scope="module", params=["sdpa", "eager"])
def policy(request, tiny_llama):
    """The tiny policy under each attention implementation the shared-prompt mask supports
    (eager adds the mask to its scores, SDPA takes it as booleans)."""
    return HFCheckpoint(path=tiny_llama.path, attn_implementation=request.param).load_policy().eval()


# Shared rows of these pairs: 12, 16 and 15 tokens; packed into rows of 30: [pair 0, pair 1], [pair 2].
PACK_LENGTH = 30


@pytest.mark.parametrize("shared, chunk_size, pack_length", [(False, 5, None), (True, 0, None), (True, 7, None),
                                                              (True, 0, PACK_LENGTH), (True, 7, PACK_LENGTH)])
def test_kernels_match_plain_path(policy, shared: bool, chunk_size: int, pack_length: int | None) -> None:
    batch = _batch(prompts=[6, 9, 3], chosen=[4, 1, 7], rejected=[2, 6, 5], vocab=policy.config.vocab_size)
    plain_sums, plain_lengths, plain_grads = _sums_and_grads(policy, batch, chunk_size=0)
    if shared:
        batch.shared_prefix = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD, pack_length)
        assert batch.shared_prefix.input_ids.shape[0] == (2 if pack_length else 3)
    sums, lengths, grads = _sums_and_grads(policy, batch, chunk_size)
    torch.testing.assert_close(sums, plain_sums, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lengths, plain_lengths)
    assert grads.keys() == plain_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.fixture(scope="module")
def layouts(tiny_llama, tmp_path_factory) -> dict[tuple[str, bool], str]:
    """Tiny Qwen2 (a full and a sliding layer) and Mistral (all sliding) checkpoints, with and
    without their sliding window (same weights)."""
    from tests.architectures import LAYOUTS, save_tiny_layout

    root = tmp_path_factory.mktemp("layouts")
    return {
        (name, sliding): str(save_tiny_layout(name, root / f"{name}-{sliding}", tiny_llama.path, sliding=sliding))
        for name in LAYOUTS
        for sliding in (True, False)
    }


@pytest.mark.parametrize("pack_length", [None, PACK_LENGTH])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["qwen", "mistral"])
def test_shared_prompt_keeps_the_sliding_window(layouts, layout: str, attention: str, pack_length: int | None) -> None:
    """A 4D mask replaces the model's own sliding window, so the shared layout must apply it:
    with rows longer than the window the kernels still give the plain path's log-probs (packed
    too, where a pair's window counts from its own restarting positions)."""
    batch = _batch(prompts=[6, 9, 3], chosen=[4, 1, 7], rejected=[2, 6, 5], vocab=256)
    policy = HFCheckpoint(path=layouts[layout, True], attn_implementation=attention).load_policy().eval()
    unwindowed = HFCheckpoint(path=layouts[layout, False], attn_implementation=attention).load_policy().eval()
    plain_sums, _, plain_grads = _sums_and_grads(policy, batch, chunk_size=0)
    with torch.no_grad():
        full_sums, _ = sequence_logprobs(unwindowed, batch)
    assert not torch.allclose(plain_sums, full_sums, atol=1e-3), "the window must matter for these rows"

    batch.shared_prefix = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD, pack_length)
    sums, _, grads = _sums_and_grads(policy, batch, chunk_size=7)
    torch.testing.assert_close(sums, plain_sums, atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, plain_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_shared_rows_encode_the_prompt_once() -> None:
    batch = _batch(prompts=[6, 3], chosen=[4, 2], rejected=[2, 5], vocab=50)
    rows = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD)
    assert rows.input_ids.shape == (2, 12)  # 6 + 4 + 2 and 3 + 2 + 5 (padded to 12)
    assert rows.num_tokens == 12 + 10
    segments = rows.segments
    assert segments.positions[0].tolist() == list(range(10)) + [6, 7]
    assert segments.pair[1].tolist() == [1] * 10 + [-1] * 2
    assert segments.kind[1].tolist() == [0] * 3 + [1] * 7 + [-1] * 2
    assert segments.completion[1].tolist() == [-1] * 3 + [0] * 2 + [1] * 5 + [-1] * 2
    mask = segments.dense()[0, 0]
    assert not mask[10:, 6:10].any()  # rejected tokens never see the chosen completion
    assert mask[10:, :6].all()  # but see the whole prompt
    assert torch.equal(mask[:10, :10], torch.ones(10, 10, dtype=torch.bool).tril())  # prompt + chosen: causal
    assert torch.equal(mask[10:, 10:], torch.ones(2, 2, dtype=torch.bool).tril())


def test_packed_rows_by_hand() -> None:
    """Pairs of 12 and 10 shared tokens in rows of 25: one row, the second pair from column 12,
    its positions restarting, its scored tokens moved with it; nothing crosses between pairs."""
    batch = _batch(prompts=[6, 3], chosen=[4, 2], rejected=[2, 5], vocab=50)
    alone = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD)
    rows = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD, pack_length=25)
    assert rows.input_ids.shape == (1, 22)
    assert torch.equal(rows.input_ids[0, 12:], alone.input_ids[1, :10])
    assert rows.segments.pair[0].tolist() == [0] * 12 + [1] * 10
    assert rows.segments.positions[0].tolist() == list(range(10)) + [6, 7] + list(range(5)) + [3, 4, 5, 6, 7]
    second = alone.scored.rows == 1
    assert rows.scored.rows.tolist() == [0] * len(second)
    assert torch.equal(rows.scored.targets[second], alone.scored.targets[second] + 12)
    assert torch.equal(rows.scored.sources[second], alone.scored.sources[second] + 12)
    mask = rows.segments.dense()[0, 0]
    assert not mask[12:, :12].any()
    assert torch.equal(mask[12:, 12:], alone.segments.dense()[1, 0, :10, :10])


def test_share_prompt_refuses_attention_without_a_per_token_rule(tiny_llama) -> None:
    policy = HFCheckpoint(path=tiny_llama.path).load_policy()
    policy.config._attn_implementation = "flash_attention_2"
    batch = _batch(prompts=[3], chosen=[2], rejected=[2], vocab=50)
    batch.shared_prefix = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD)
    with pytest.raises(ValueError, match="data.share_prompt=true cannot run on model.attn_implementation=flash_attention_2"):
        sequence_logprobs(policy, batch)


def test_chunked_head_refuses_models_that_transform_logits(tiny_llama) -> None:
    """A model that scales or soft-caps after its head would have that step skipped: refused."""
    policy = HFCheckpoint(path=tiny_llama.path).load_policy()
    forward = policy.forward
    policy.forward = lambda **inputs: type(out := forward(**inputs))(logits=out.logits * 0.5)
    batch = _batch(prompts=[3], chosen=[2], rejected=[2], vocab=50)
    with pytest.raises(ValueError, match="transforms its LM head's output"):
        sequence_logprobs(policy, batch, chunk_size=4)


@pytest.mark.parametrize("keep_softmax", [True, False], ids=["softmax-kept", "logits-recomputed"])
def test_chunked_head_gradients_match_autograd(keep_softmax: bool, monkeypatch) -> None:
    """The hand-written backward equals autograd through full logits, chunk boundaries included,
    whether the forward kept the softmax (small heads) or the backward recomputes the logits."""
    from lit_prefopt.kernels import chunked_head

    monkeypatch.setattr(chunked_head, "KEEP_SOFTMAX_BYTES", chunked_head.KEEP_SOFTMAX_BYTES if keep_softmax else 0)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(11, 8, generator=generator, requires_grad=True)
    weight = torch.randn(30, 8, generator=generator, requires_grad=True)
    targets = torch.randint(0, 30, (11,), generator=generator)
    upstream = torch.randn(11, generator=generator)
    expected = torch.log_softmax(hidden @ weight.T, dim=1).gather(1, targets[:, None]).squeeze(1)
    want = torch.autograd.grad((expected * upstream).sum(), (hidden, weight))
    got_values = ChunkedHeadLogprobs.apply(hidden, weight, targets, 4)
    got = torch.autograd.grad((got_values * upstream).sum(), (hidden, weight))
    torch.testing.assert_close(got_values, expected.detach())
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_share_prompt_collation_gives_the_padded_logprobs(tiny_llama, policy) -> None:
    """`data.share_prompt=true` end to end: real pairs through the data module, same log-probs."""
    from lit_prefopt.data.datamodule import PreferenceDataModule
    from lit_prefopt.paths import sample_data_path

    def first_batch(share_prompt: bool, pack: bool = False) -> PreferenceBatch:
        data = PreferenceDataModule(train_files=[str(sample_data_path("train.jsonl"))], batch_size=4, shuffle=False,
                                    share_prompt=share_prompt, pack=pack)
        data.set_tokenizer(tiny_llama.load_tokenizer())
        return next(iter(data.train_dataloader()))

    padded, shared, packed = first_batch(False), first_batch(True), first_batch(True, pack=True)
    assert padded.shared_prefix is None and shared.shared_prefix is not None
    assert packed.shared_prefix.input_ids.shape[0] == 1, "four short sample pairs fit one row of 2 * 1024 tokens"
    with torch.no_grad():
        expected = sequence_logprobs(policy, padded)
        torch.testing.assert_close(sequence_logprobs(policy, shared), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sequence_logprobs(policy, packed), expected, atol=1e-5, rtol=1e-5)


def test_chunked_head_refuses_a_second_backward_through_a_kept_softmax() -> None:
    """The kept softmax becomes the logits' gradient in place, so a second backward through the same
    forward (retain_graph) must fail loudly rather than use the overwritten buffer."""
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 8, generator=generator, requires_grad=True)
    weight = torch.randn(30, 8, generator=generator, requires_grad=True)
    logps = ChunkedHeadLogprobs.apply(hidden, weight, torch.randint(0, 30, (5,), generator=generator), 4)
    logps.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        logps.sum().backward()


def test_packed_batch_never_holds_more_tokens_than_the_padded_batch() -> None:
    """Two 15-token pairs fill one row of 30 beside two 16-token pairs in rows of their own: 3 x 30
    tokens against the padded 8 x 11. Such a batch packs into rows of at most twice the padded
    width instead (here one pair per row, 4 x 16), which is what `data.max_num_tokens` bounds."""
    batch = _batch(prompts=[1, 1, 1, 1], chosen=[7, 7, 10, 10], rejected=[7, 7, 5, 5], vocab=50)
    assert batch.input_ids.shape == (8, 11)
    rows = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD, pack_length=30)
    alone = share_prompts(batch.input_ids, batch.attention_mask, batch.completion_mask, PAD)
    assert rows.input_ids.shape == alone.input_ids.shape == (4, 16)
    assert torch.equal(rows.input_ids, alone.input_ids)
