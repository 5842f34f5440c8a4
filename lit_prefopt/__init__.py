"""lit_prefopt: preference-optimization finetuning for causal LMs (Lightning + Hydra)."""

from lit_prefopt.resolvers import register_resolvers
from lit_prefopt.trainer_args import register_trainer_defaults

register_resolvers()
register_trainer_defaults()
