"""Hydra entry: `python -m lit_prefopt [group=option] [key=value] [-m for sweeps]`."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import lit_prefopt  # noqa: F401  (registers the config resolvers before Hydra composes)
from lit_prefopt.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train, then hand `metrics[optimized_metric]` to Hydra so sweepers can optimize it."""
    metrics = train(cfg)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    main()
