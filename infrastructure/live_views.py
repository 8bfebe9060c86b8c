"""The interface the event recorders use to keep views current in the write.

Each write transaction inserts its events, then hands them with their log
positions to every live view, on the same cursor: the view rows and the
position they reflect commit, or roll back, with the events themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from imageledger.domain.image import Image
from imageledger.infrastructure.errors import StoreError

Recorded = Sequence[tuple[int, Image.Event]]
"""Events as the log recorded them: (position, event), in log order."""


class LiveView(Protocol):
    """A view kept current inside the transaction that appends the events."""

    def apply(self, cursor: Any, recorded: Recorded) -> None:
        """Fold `recorded` into the view using `cursor`'s transaction."""


def fold_in_batches(
    read: Callable[[int], Recorded],
    fold: Callable[[Iterable[Image.Event]], None],
    *,
    after: int,
    upto: int,
) -> int:
    """Fold the log's events after `after` up to `upto`, a batch at a time.

    `read(after)` returns the next batch (empty at the end); `fold` folds one.
    Returns the number of events folded. A view beyond the log means events
    were removed from it: StoreError.
    """
    if after > upto:
        raise StoreError(
            f"the current view is at position {after}, beyond the log's {upto}: "
            "events were removed from the log"
        )
    folded = 0
    while after < upto:
        batch = read(after)
        if not batch:
            break
        fold(event for _, event in batch)
        after = batch[-1][0]
        folded += len(batch)
    return folded
