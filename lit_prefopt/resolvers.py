"""OmegaConf resolvers the config files use; registered on import of the package."""

from __future__ import annotations

from omegaconf import OmegaConf

from lit_prefopt.paths import default_cache_dir, sample_data_path


def register_resolvers() -> None:
    """`${sample_data:train.jsonl}` -> bundled sample file, `${default_cache_dir:}` -> cache,
    `${first_set:${run_name},fallback}` -> the first argument that is not null (run directory names).
    """
    OmegaConf.register_new_resolver("sample_data", lambda name: str(sample_data_path(name)), replace=True)
    OmegaConf.register_new_resolver("default_cache_dir", lambda: str(default_cache_dir()), replace=True)
    OmegaConf.register_new_resolver("first_set", _first_set, replace=True)


def _first_set(*values: object) -> object:
    return next((value for value in values if value is not None), None)
