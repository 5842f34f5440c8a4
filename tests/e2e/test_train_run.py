"""The real Hydra entry end to end on the tiny model: layout, checkpoint, export, criteria."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_prefopt.train import train

REPO = Path(__file__).resolve().parents[2]
CORE = {"dpo", "simpo", "cpo", "orpo"}
# Every option in conf/criterion/ trains through the entry, so none can rot; the core four run
# in the fast suite, the rest are marked slow.
CRITERIA = [
    pytest.param(p.stem, marks=() if p.stem in CORE else pytest.mark.slow)
    for p in sorted((REPO / "lit_prefopt" / "conf" / "criterion").glob("*.yaml"))
]
SHORT = ("trainer.max_steps=4", "trainer.val_check_interval=4", "data.batch_size=4", "checkpoint.every_n_steps=2")


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as file:
        return list(csv.DictReader(file))


def column(rows: list[dict[str, str]], name: str) -> list[float]:
    return [float(r[name]) for r in rows if r.get(name) not in (None, "")]


def test_default_dpo_run_writes_the_documented_layout(compose, tmp_path: Path, tiny_llama) -> None:
    cfg = compose(*SHORT)
    reference_files = _digest(Path(tiny_llama.path))
    metrics = train(cfg)
    run = Path(cfg.run_dir)

    rows = read_metrics(run)
    for name in ("train/loss", "train/pref_loss", "train/nll_loss", "train/rewards/chosen", "train/rewards/rejected",
                 "train/rewards/margin", "train/rewards/accuracy", "train/logps/chosen", "train/logps/rejected",
                 "train/lengths/chosen", "train/lengths/rejected", "train/tokens_per_s", "train/lr", "train/grad_norm",
                 "val/loss", "val/rewards/accuracy", "val/rewards/margin"):
        assert column(rows, name), f"{name} was never logged"
    assert len(column(rows, "train/loss")) == 4, "one train row per optimizer step"
    assert not any(key.endswith(("_step", "_epoch")) for key in rows[0])
    assert column(rows, "train/loss")[0] == pytest.approx(0.6931, abs=2e-3), "DPO starts at log 2"
    # Policy = reference before training: every reward is 0, so no pair has a positive margin. Four
    # steps must move the held-out pairs the right way (measured: accuracy 1.0, margin 0.70, loss 0.41).
    initial = json.loads((run / "summary.json").read_text())["initial_val"]
    assert initial["val/rewards/margin"] == 0.0 and initial["val/rewards/accuracy"] == 0.0
    assert initial["val/loss"] == pytest.approx(0.6931, abs=1e-4)
    assert metrics["val/rewards/accuracy"] >= 0.75, "training did not learn the held-out preferences"
    assert metrics["val/rewards/margin"] > 0.2 and metrics["val/loss"] < 0.6
    assert column(rows, "train/loss")[-1] < column(rows, "train/loss")[0]

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert isinstance(ckpt["config"], dict) and ckpt["config"]["criterion"]["beta"] == 0.1
    assert not any(key.startswith("reference") for key in ckpt["state_dict"])
    assert sorted(p.name for p in (run / "checkpoints").glob("step=*.ckpt")) == ["step=2.ckpt", "step=4.ckpt"]

    exported = AutoModelForCausalLM.from_pretrained(run / "hf")
    reference = tiny_llama.load_policy()
    trained = ckpt["state_dict"]
    for name, tensor in exported.state_dict().items():
        torch.testing.assert_close(tensor, trained[f"policy.{name}"])
    changed = [n for n, t in reference.state_dict().items() if not torch.equal(t, exported.state_dict()[n])]
    assert changed, "training changed no policy weight"
    assert (run / "hf" / "tokenizer.json").is_file()

    assert _digest(Path(tiny_llama.path)) == reference_files, "the reference checkpoint on disk was modified"

    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and "val/rewards/accuracy" in summary["final_val"]
    assert summary["tokens"] > 4 * 4 * 2 * 10, "4 steps x 4 pairs x 2 rows of 10+ tokens"
    assert all(0.0 <= v < 1.0 for v in column(rows, "train/padding_ratio"))
    assert (run / "curves.png").stat().st_size > 1000


def _digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("criterion", CRITERIA)
def test_every_criterion_trains_through_the_entry(compose, criterion: str) -> None:
    cfg = compose(f"criterion={criterion}", *SHORT, "validate_before_training=false", "export_hf=false")
    metrics = train(cfg)
    rows = read_metrics(Path(cfg.run_dir))
    losses = column(rows, "train/loss")
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert torch.isfinite(torch.tensor(metrics["val/loss"]))

    # The logged objective is the criterion's term plus nll_scale times the chosen NLL, on every
    # train row and on the validation (nll_loss ~ 6.5 nats here, so a missing or doubled term shows).
    scale = nll_scale(cfg.criterion)
    logged = [row for row in rows if row.get("train/loss") or row.get("val/loss")]
    assert len(logged) == 5, "4 train rows and 1 validation row"
    for row in logged:
        split = "train" if row.get("train/loss") else "val"
        loss, pref, nll = (float(row[f"{split}/{name}"]) for name in ("loss", "pref_loss", "nll_loss"))
        assert nll > 1.0
        assert loss == pytest.approx(pref + scale * nll, rel=1e-5, abs=1e-5), (split, row["step"], scale)


def nll_scale(node) -> float:
    """The NLL weight a criterion option declares: its own `nll_scale` (0 when unset), plus, for a
    weighted sum, each term's weight times that term's (docs/CRITERIA.md, `weighted_sum`)."""
    terms = node.get("terms") or {}
    return float(node.get("nll_scale", 0.0)) + sum(t.get("weight", 1.0) * nll_scale(t.criterion) for t in terms.values())


def test_resume_reaches_the_same_weights(compose, tmp_path: Path) -> None:
    common = ("scheduler=constant", "data.batch_size=4", "validate_before_training=false", "export_hf=false",
              "trainer.val_check_interval=100", "data.val_files=null", "checkpoint.every_n_steps=3")
    straight = compose(*common, "trainer.max_steps=6", run_dir=tmp_path / "straight")
    train(straight)
    first = compose(*common, "trainer.max_steps=3", run_dir=tmp_path / "resumed")
    train(first)
    resumed = compose(*common, "trainer.max_steps=6", "ckpt_path=last", run_dir=tmp_path / "resumed")
    train(resumed)

    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)
    straight_losses = column(read_metrics(tmp_path / "straight"), "train/loss")
    resumed_losses = column(read_metrics(tmp_path / "resumed"), "train/loss")
    assert resumed_losses == pytest.approx(straight_losses, abs=1e-6), "metrics.csv reads as one run"


def test_resume_between_checkpoint_and_validation_logs_each_row_once(compose, tmp_path: Path) -> None:
    """Validation every 3 steps, checkpoints every 2: a run resumed from step=2.ckpt (as after a
    kill following the validation after step 3) has the rows of an uninterrupted run, once each."""
    common = ("scheduler=constant", "data.batch_size=4", "export_hf=false", "trainer.max_steps=4",
              "trainer.val_check_interval=3", "checkpoint.every_n_steps=2", "checkpoint.keep_last_n=-1")
    train(compose(*common, run_dir=tmp_path / "straight"))
    train(compose(*common, run_dir=tmp_path / "killed"))
    checkpoints = tmp_path / "killed" / "checkpoints"
    for name in ("last.ckpt", "step=4.ckpt"):
        (checkpoints / name).unlink()
    train(compose(*common, f"ckpt_path='{checkpoints / 'step=2.ckpt'}'", run_dir=tmp_path / "killed"))  # quoted: '=' in it

    def logged(run: str) -> list[tuple[str, str, str]]:
        return [(r["step"], r.get("train/loss", ""), r.get("val/loss", "")) for r in read_metrics(tmp_path / run)]

    assert logged("killed") == logged("straight")
    assert len(column(read_metrics(tmp_path / "straight"), "val/loss")) == 3, "before training, after 3 and after 4 steps"


def test_truncated_pairs_are_counted_and_logged(compose) -> None:
    """Sample prompts are ~12 tokens: a 10-token cap truncates every pair, and says so."""
    cfg = compose("trainer.max_steps=2", "data.batch_size=4", "data.max_seq_len=10", "validate_before_training=false",
                  "data.val_files=null", "export_hf=false")
    train(cfg)
    truncated = column(read_metrics(Path(cfg.run_dir)), "train/data/truncated")
    assert truncated == [4.0, 8.0]
    summary = json.loads((Path(cfg.run_dir) / "summary.json").read_text())
    assert summary["data_counts"]["truncated"] == 8


def test_resume_without_checkpoint_starts_fresh(compose, tmp_path: Path, caplog) -> None:
    cfg = compose("trainer.max_steps=1", "ckpt_path=last", "validate_before_training=false", "export_hf=false",
                  "data.val_files=null", "data.batch_size=2")
    train(cfg)
    assert "starting a fresh run" in caplog.text


def test_a_fresh_run_refuses_a_used_run_directory(compose, tmp_path: Path) -> None:
    """Re-running into outputs/<run_name> without ckpt_path would mix two runs in metrics.csv and
    leave the old checkpoints for ckpt_path=last: refused, before any model loads. With
    ckpt_path=last but no checkpoint yet (killed before the first one), the old rows go."""
    common = ("trainer.max_steps=1", "validate_before_training=false", "export_hf=false", "data.val_files=null",
              "data.batch_size=2")
    train(compose(*common))
    run = tmp_path / "run"
    with pytest.raises(FileExistsError, match=f"{run} already holds a run .*ckpt_path=last"):
        train(compose(*common))

    (run / "checkpoints" / "last.ckpt").unlink()
    for stale in (run / "checkpoints").glob("*.ckpt"):
        stale.unlink()
    train(compose(*common, "ckpt_path=last"))
    assert len(column(read_metrics(run), "train/loss")) == 1, "the killed run's rows were dropped"
