"""Valid text records for the data tests (a module, not a fixture, so tests can build lists of them)."""


def pair(index: int, **extra) -> dict:
    """A distinct, valid text record whose id is its index."""
    return {"id": str(index), "src": f"Question {index}?", "tgt_chosen": f" yes {index}", "tgt_rejected": f" no {index}", **extra}
