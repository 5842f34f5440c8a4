"""Every `lightning.Trainer` argument is accepted as `trainer.<name>` without a `+`."""

from __future__ import annotations

import inspect

from hydra.utils import instantiate
from lightning.pytorch import Trainer

from lit_prefopt.config_checks import GROUP_BUILT_TRAINER_ARGUMENTS

TRAINER_ARGUMENTS = [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]


def test_every_trainer_argument_is_a_key(compose) -> None:
    settable = [name for name in TRAINER_ARGUMENTS if name not in GROUP_BUILT_TRAINER_ARGUMENTS]
    cfg = compose(*(f"trainer.{name}=null" for name in settable))
    assert all(cfg.trainer[name] is None for name in settable)
    # The other three are the config groups train() builds them from.
    assert all(name in cfg for name in GROUP_BUILT_TRAINER_ARGUMENTS)


def test_listed_defaults_leave_the_trainer_as_configured(compose) -> None:
    cfg = compose("trainer.limit_val_batches=2", "trainer=gpu")
    trainer = instantiate(cfg.trainer, accelerator="cpu", devices=1, logger=False, callbacks=[])
    assert trainer.limit_val_batches == 2 and trainer.max_steps == 5000 and trainer.fit_loop.max_epochs == -1
    assert trainer.limit_train_batches == 1.0 and trainer.overfit_batches == 0.0, "Lightning's defaults"
