"""Hydra entry: `python -m lit_prefopt [group=option] [key=value] [-m for sweeps]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import lit_prefopt  # noqa: F401  (registers the config resolvers before Hydra composes)
from lit_prefopt.outputs.wandb_logger import finish_wandb_run
from lit_prefopt.train import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train, then hand `metrics[optimized_metric]` to Hydra so sweepers can optimize it."""
    try:
        metrics = train(cfg)
    finally:
        finish_wandb_run()  # the next job of a multirun must start its own W&B run
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
