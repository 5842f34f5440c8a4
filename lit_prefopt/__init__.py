"""lit_prefopt: preference-optimization finetuning for causal LMs (Lightning + Hydra)."""

from lit_prefopt.resolvers import register_resolvers

register_resolvers()
