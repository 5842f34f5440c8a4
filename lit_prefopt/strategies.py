"""Strategy config options that Lightning accepts by name rather than as an object."""


def named(name: str) -> str:
    """`strategy=auto` resolves to Lightning's own choice of strategy for the devices."""
    return name
