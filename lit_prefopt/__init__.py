"""lit_prefopt: preference-optimization finetuning for causal LMs (Lightning + Hydra).

The Python API: one LightningModule per criterion (`DPOModule`, `SimPOModule`, ...; see
`lit_prefopt.criterion_modules`), `PreferenceDataModule`, and `CRITERIA` (criterion option -> class).
They are imported on first use, so `import lit_prefopt` (the config resolvers) stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from lit_prefopt.resolvers import register_resolvers
from lit_prefopt.trainer_args import register_trainer_defaults

register_resolvers()
register_trainer_defaults()

# Name -> the submodule that defines it; the per-criterion modules are looked up in `modules`.
_EXPORTS = {
    "CRITERIA": "lit_prefopt.criteria",
    "PreferenceDataModule": "lit_prefopt.data.datamodule",
    "PreferenceModule": "lit_prefopt.module",
    "CriterionModule": "lit_prefopt.criterion_modules",
    "module_class": "lit_prefopt.criterion_modules",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    if name.endswith("Module"):
        modules = import_module("lit_prefopt.criterion_modules").MODULES
        if name in modules:
            return modules[name]
    raise AttributeError(f"module 'lit_prefopt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, *import_module("lit_prefopt.criterion_modules").MODULES])
