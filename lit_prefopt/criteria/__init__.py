"""The criteria registry: `CRITERIA` maps each criterion's config option to its class.

It is the one list of what lit_prefopt trains with. The per-criterion LightningModules
(`lit_prefopt.criterion_modules`), the config tests and the tables of README.md and
docs/CRITERIA.md are derived from it (tests check that every registered name has its
`conf/criterion/<name>.yaml` with the class's defaults, and that the tables list exactly the
registered names and their presets). The name is the option that holds the class's defaults;
presets of a class (`cdpo`, `rpo`, `ln_dpo`, `tr_dpo`, `apo_down`) are YAML files over it, not
entries here. Adding a criterion: one file in this package, one YAML file, one line below.
"""

from __future__ import annotations

from lit_prefopt.criteria.alphapo import AlphaPO
from lit_prefopt.criteria.apo import APO
from lit_prefopt.criteria.base import Criterion
from lit_prefopt.criteria.bco import BCOPair
from lit_prefopt.criteria.cpo import CPO
from lit_prefopt.criteria.discopop import DiscoPOP
from lit_prefopt.criteria.dpo import DPO
from lit_prefopt.criteria.exo import EXOPair
from lit_prefopt.criteria.f_dpo import FDivergenceDPO
from lit_prefopt.criteria.hinge import Hinge
from lit_prefopt.criteria.ipo import IPO
from lit_prefopt.criteria.nca import NCAPair
from lit_prefopt.criteria.orpo import ORPO
from lit_prefopt.criteria.robust_dpo import RobustDPO
from lit_prefopt.criteria.simpo import SimPO
from lit_prefopt.criteria.slic import SLiC
from lit_prefopt.criteria.sppo import SPPOHard
from lit_prefopt.criteria.weighted_sum import WeightedSum

CRITERIA: dict[str, type[Criterion]] = {
    "dpo": DPO,
    "ipo": IPO,
    "hinge": Hinge,
    "robust_dpo": RobustDPO,
    "nca_pair": NCAPair,
    "bco_pair": BCOPair,
    "sppo_hard": SPPOHard,
    "apo_zero": APO,
    "exo_pair": EXOPair,
    "discopop": DiscoPOP,
    "f_dpo": FDivergenceDPO,
    "simpo": SimPO,
    "alphapo": AlphaPO,
    "cpo": CPO,
    "orpo": ORPO,
    "slic_hf": SLiC,
    "weighted_sum": WeightedSum,
}
