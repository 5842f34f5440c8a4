"""The test that catches sign errors: a learnable preference is actually learned.

The bundled sample pairs (lit_prefopt/data/synthetic.py) prefer a helpful, correct reply to a
curt, wrong one. On 256 held-out pairs the reward accuracy must start near or below chance and
end high after a short CPU run of the real entry.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lit_prefopt.train import train


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["dpo", "simpo", "cpo", "orpo"])
def test_reward_accuracy_rises_on_held_out_pairs(compose, criterion: str) -> None:
    cfg = compose(f"criterion={criterion}", "trainer.max_steps=60", "trainer.val_check_interval=60",
                  "data.batch_size=8", "export_hf=false")
    final = train(cfg)
    summary = json.loads((Path(cfg.run_dir) / "summary.json").read_text())
    before = summary["initial_val"]["val/rewards/accuracy"]
    after = final["val/rewards/accuracy"]
    assert before <= 0.6, f"{criterion}: accuracy {before} before training"
    assert after >= 0.8, f"{criterion}: accuracy {after} after training (was {before})"
    assert final["val/rewards/margin"] > summary["initial_val"]["val/rewards/margin"]
