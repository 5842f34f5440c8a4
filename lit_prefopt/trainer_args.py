"""Every `lightning.Trainer` argument as a `trainer.<name>` config key, at Lightning's default.

Hydra closes the composed config, so an override of a key that no config file names needs a
`+` (`+trainer.limit_val_batches=2`), and users were told any Trainer argument works as
`trainer.<name>`. A hand-written list would drift from the installed Lightning, so the list is
read from `Trainer.__init__`'s signature and stored as the config `trainer/lightning_defaults`,
which conf/trainer/default.yaml extends. Passing an argument at its own default changes nothing.
"""

from __future__ import annotations

import inspect
from typing import Any

from hydra.core.config_store import ConfigStore
from lightning.pytorch import Trainer

from lit_prefopt.config_checks import GROUP_BUILT_TRAINER_ARGUMENTS


def lightning_trainer_defaults() -> dict[str, Any]:
    """Each keyword argument of the installed `Trainer` with its default value, except those
    train() builds from config groups (strategy, logger, callbacks)."""
    parameters = inspect.signature(Trainer.__init__).parameters.values()
    return {
        p.name: p.default
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in GROUP_BUILT_TRAINER_ARGUMENTS
    }


def register_trainer_defaults() -> None:
    """Make `trainer/lightning_defaults` available to Hydra's composition (as a complete option:
    `trainer=lightning_defaults` is a Trainer with nothing changed)."""
    node = {"_target_": f"{Trainer.__module__}.{Trainer.__qualname__}", **lightning_trainer_defaults()}
    ConfigStore.instance().store(group="trainer", name="lightning_defaults", node=node)
