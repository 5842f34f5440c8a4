"""Completion log-probs from a real (tiny) Llama: against a hand computation and padding."""

from __future__ import annotations

import math

import torch

from lit_prefopt.data.batch import PreferenceBatch
from lit_prefopt.kernels.logprobs import masked_sums, sequence_logprobs, token_logprobs


def test_token_logprobs_matches_hand_computation() -> None:
    """Vocabulary of 2, logits [0, ln 3] at every position: p(token 1) = 3/4, p(token 0) = 1/4.

    Sequence [0, 1, 0]: column 0 is never predicted (0); token 1 at t=1 has log(3/4); token 0 at
    t=2 has log(1/4).
    """
    logits = torch.tensor([[[0.0, math.log(3.0)]] * 3])
    got = token_logprobs(logits, torch.tensor([[0, 1, 0]]))
    torch.testing.assert_close(got, torch.tensor([[0.0, math.log(0.75), math.log(0.25)]]))
    sums, counts = masked_sums(got, torch.tensor([[False, False, True]]))
    torch.testing.assert_close(sums, torch.tensor([math.log(0.25)]))
    torch.testing.assert_close(counts, torch.tensor([1.0]))


def test_right_padding_does_not_change_logprobs(tiny_llama) -> None:
    """A row padded into a batch scores the same as the row alone (attention mask respected)."""
    model = tiny_llama.load_policy().eval()
    short = [5, 17, 33, 8, 9]
    long = [5, 40, 41, 42, 43, 44, 45, 46]
    pad = 0
    ids = torch.tensor([short + [pad] * 3, long])
    attention = torch.tensor([[1] * 5 + [0] * 3, [1] * 8])
    completion = torch.tensor([[0, 0, 1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    batch = PreferenceBatch(ids, attention, completion, pair_weights=torch.ones(1))
    with torch.no_grad():
        sums, lengths = sequence_logprobs(model, batch)
        alone = sequence_logprobs(
            model, PreferenceBatch(torch.tensor([short]), torch.ones(1, 5, dtype=torch.long), completion[:1, :5], torch.ones(1))
        )[0]
        logits = model(input_ids=torch.tensor([short])).logits[0].double()
    expected = sum(torch.log_softmax(logits[t - 1], -1)[short[t]].item() for t in (2, 3, 4))
    assert abs(sums[0].item() - expected) < 1e-4
    torch.testing.assert_close(sums[0], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(lengths, torch.tensor([3.0, 4.0]))
