"""First-step parity with TRL: `python -m benchmarks.parity SPEC.json`.

On the first pairs of the benchmark file, in file order, both systems tokenize (each with its
own code), run the untrained policy (and reference) and compute the loss. Printed and
recorded: whether the token rows are identical, the mean chosen/rejected log-probs as each
criterion uses them (sums or per-token averages), the preference term and the whole loss.

lit_prefopt runs its plain path here (padded rows, full logits): the same computation as TRL,
so any difference is in the math. Its default kernels (shared prompt, chunked head) are tested
against that path separately (tests/test_logprob_kernels.py: sums and gradients within 1e-5);
on these 8 pairs they move the summed log-probs by float32 rounding (~2e-4 on sums of ~-450,
4e-7 relative).

Two definitional differences in TRL's NLL term are reported rather than hidden, so compare
the preference term and log-probs for those: TRL's CPO/ORPO NLL is the token-weighted mean
over all chosen tokens of the batch, lit_prefopt's (docs/ARCHITECTURE.md#log-probs-and-loss-conventions) the mean over pairs of
each pair's per-token NLL (they coincide for one pair, hence the batch of one); and TRL's
ORPO NLL also scores the prompt tokens, which lit_prefopt masks out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.fixture import collate_records
from benchmarks.trl_runner import build_trainer
from lit_prefopt.criteria.base import PairLogps
from lit_prefopt.kernels.logprobs import sequence_logprobs
from lit_prefopt.models.checkpoint import HFCheckpoint

CONF = Path(__file__).resolve().parents[1] / "lit_prefopt" / "conf" / "criterion"
TOLERANCE = 1e-4


def trl_first_step(trainer, criterion: str, batch_size: int) -> dict:
    """TRL's loss and metrics on its own collation of the first `batch_size` pairs."""
    features = [trainer.train_dataset[i] for i in range(batch_size)]
    batch = trainer.data_collator(features)
    model = trainer.model.train()  # TRL disabled dropout; train mode files its metrics under "train"
    with torch.no_grad():
        if criterion == "dpo":
            loss = trainer._compute_loss(model, batch, return_outputs=False)
            metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
            nll = 0.0
        else:
            loss, metrics = trainer.get_batch_loss_metrics(model, batch, "train")
            nll = float(metrics["nll_loss"])
    # DPO stacks chosen and rejected rows; CPO/ORPO pad them as two separate tensors.
    prefixes = [""] if "input_ids" in batch else ["chosen_", "rejected_"]
    rows = [row for p in prefixes for row in batch[f"{p}input_ids"]]
    masks = [mask for p in prefixes for mask in batch[f"{p}attention_mask"]]
    scale = {"cpo": trainer.cpo_alpha if hasattr(trainer, "cpo_alpha") else 1.0, "orpo": 1.0}.get(criterion, 0.0)
    return {
        "rows": [r[m.bool()].tolist() for r, m in zip(rows, masks)],
        "loss": float(loss),
        "pref_loss": float(loss) - scale * nll,
        "logps_chosen": float(metrics["logps/chosen"]),
        "logps_rejected": float(metrics["logps/rejected"]),
    }


def lit_first_step(checkpoint: HFCheckpoint, criterion_name: str, records: list[dict]) -> dict:
    """lit_prefopt's tokenization, collation, log-probs and criterion on the same pairs."""
    batch = collate_records(checkpoint.load_tokenizer(), records)
    criterion = instantiate(OmegaConf.load(CONF / f"{criterion_name}.yaml"))
    policy = checkpoint.load_policy()
    with torch.no_grad():
        sums, lengths = sequence_logprobs(policy, batch)
        reference = None
        if criterion.needs_reference:
            reference = sequence_logprobs(checkpoint.load_reference(), batch)[0].chunk(2)
    chosen, rejected = sums.chunk(2)
    logps = PairLogps(chosen, rejected, *lengths.chunk(2), *(reference or (None, None)))
    output = criterion(logps)
    per_pair = output.losses + criterion.nll_scale * logps.chosen_nll
    used_chosen, used_rejected = logps.reduced(criterion.reduction)
    return {
        "rows": [r[m.bool()].tolist() for r, m in zip(batch.input_ids, batch.attention_mask)],
        "loss": float(per_pair.mean()),
        "pref_loss": float(output.losses.mean()),
        "logps_chosen": float(used_chosen.mean()),
        "logps_rejected": float(used_rejected.mean()),
    }


def compare(trl: dict, lit: dict) -> dict:
    diffs = {key: abs(trl[key] - lit[key]) for key in ("loss", "pref_loss", "logps_chosen", "logps_rejected")}
    return {"same_tokens": trl["rows"] == lit["rows"], "trl": {k: v for k, v in trl.items() if k != "rows"},
            "lit_prefopt": {k: v for k, v in lit.items() if k != "rows"}, "abs_diff": diffs}


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    records = [json.loads(line) for line in open(spec["pairs"], encoding="utf-8")]
    checkpoint = HFCheckpoint(path=spec["checkpoint"])
    results = {}
    for criterion in spec["criteria"]:
        trainer = build_trainer({"criterion": criterion, "model": spec["checkpoint"], "data": spec["pairs"],
                                 "output_dir": spec["output_dir"], "batch_size": spec["batch_size"],
                                 "max_seq_len": spec["max_seq_len"], "steps": 1, "lr": 1e-4, "gradient_checkpointing": False})
        results[criterion] = {}
        for size in sorted({spec["batch_size"], 1}, reverse=True):
            result = compare(trl_first_step(trainer, criterion, size), lit_first_step(checkpoint, criterion, records[:size]))
            results[criterion][f"batch_{size}"] = result
            print(criterion, size, json.dumps(result["abs_diff"]), "same tokens:", result["same_tokens"], flush=True)
    Path(spec["out"]).write_text(json.dumps({"tolerance": TOLERANCE, "criteria": results}))


if __name__ == "__main__":
    main(sys.argv[1])
