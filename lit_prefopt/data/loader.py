"""A `StatefulDataLoader` whose saved position matches the batches Lightning has trained on.

Lightning's training loop fetches one batch ahead of the step it runs (its prefetching data
fetcher), so a plain `StatefulDataLoader` checkpointed mid-epoch records one batch more than
was trained on, and a resumed run silently skips that batch. This loader remembers its state
from just before the newest batch it handed out and reports that one; once the epoch is
exhausted there is no batch in flight and it reports its current state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torchdata.stateful_dataloader import StatefulDataLoader


class LightningStatefulLoader(StatefulDataLoader):
    """`state_dict()` lags one batch behind the iterator: the position of the last batch *trained on*."""

    _in_flight_state: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()
        self._in_flight_state = None
        return self._lagging(iterator)

    def _lagging(self, iterator: Iterator[Any]) -> Iterator[Any]:
        while True:
            before = StatefulDataLoader.state_dict(self)
            try:
                batch = next(iterator)
            except StopIteration:
                self._in_flight_state = None
                return
            self._in_flight_state = before
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return self._in_flight_state if self._in_flight_state is not None else super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._in_flight_state = None
        super().load_state_dict(state_dict)
