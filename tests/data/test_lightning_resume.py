"""Lightning saves the stream position in its checkpoint and a resumed fit continues from it."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from lit_prefopt.data.datamodule import PreferenceDataModule
from tests.data.pairs import pair


class RecordingModule(pl.LightningModule):
    """Trains one scalar and remembers the pair ids of every training batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[list[str]] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.ids)
        return (self.weight * batch.completion_mask.float().mean()) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(datamodule, max_steps: int, tmp_path, ckpt_path=None) -> tuple[RecordingModule, pl.Trainer]:
    module = RecordingModule()
    trainer = pl.Trainer(
        max_steps=max_steps, max_epochs=-1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module, trainer


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resumed_fit_continues_with_the_next_unseen_pair(write_jsonl, tokenizer, tmp_path, num_workers):
    path = write_jsonl("train.jsonl", [pair(i) for i in range(24)])

    def datamodule():
        return PreferenceDataModule([str(path)], batch_size=4, shuffle_buffer=8, num_workers=num_workers, tokenizer=tokenizer)

    # 6 batches per epoch: 9 steps cross into the second epoch, which is reshuffled.
    full, _ = fit(datamodule(), 9, tmp_path)
    first, trainer = fit(datamodule(), 4, tmp_path)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    resumed, _ = fit(datamodule(), 9, tmp_path, ckpt_path=str(tmp_path / "mid.ckpt"))
    assert first.seen + resumed.seen == full.seen
    assert sorted(i for ids in full.seen[:6] for i in ids) == sorted(str(i) for i in range(24))
