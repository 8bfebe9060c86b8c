"""The interface the event recorders use to keep views current in the write.

Each write transaction inserts its events, then hands them with their log
positions to every live view, on the same cursor: the view rows and the
position they reflect commit, or roll back, with the events themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from imageledger.domain.errors import BrokenRule, ImmutableImage
from imageledger.domain.image import ImageName, check_follows
from imageledger.infrastructure.errors import IntegrityError, StoreError
from imageledger.infrastructure.hash_chain import RULE_BROKEN, VIEW_DIFFERS
from imageledger.projections.current_view import CurrentImage, fold, standing

Recorded = Sequence[tuple[int, ImageName.Event]]
"""Events as the log recorded them: (position, event), in log order."""


class LiveView(Protocol):
    """A view kept current inside the transaction that appends the events."""

    def apply(self, cursor: Any, recorded: Recorded) -> None:
        """Fold `recorded` into the view using `cursor`'s transaction."""


def fold_in_batches(
    read: Callable[[int], Recorded],
    fold: Callable[[Iterable[ImageName.Event]], None],
    *,
    after: int,
    upto: int,
) -> int:
    """Fold the log's events after `after` up to `upto`, a batch at a time.

    `read(after)` returns the next batch (empty at the end); `fold` folds one.
    Returns the number of events folded. A view beyond the log (its tracking
    row changed, or events removed from the log): IntegrityError.
    """
    check_not_beyond("current view", after, upto)
    folded = 0
    while after < upto:
        batch = read(after)
        if not batch:
            break
        fold(event for _, event in batch)
        after = batch[-1][0]
        folded += len(batch)
    return folded


def check_not_beyond(view: str, position: int, head: int) -> None:
    """IntegrityError if `view` says it reflects more of the log than there is."""
    if position > head:
        raise IntegrityError(
            head + 1,
            VIEW_DIFFERS,
            f"the {view} says it reflects log position {position}, but the log "
            f"ends at position {head}; `imageledger rebuild` refolds the views "
            "from the log",
        )


def fold_states(
    states: dict[tuple[str, str], CurrentImage | None],
    events: Sequence[ImageName.Event],
    positions: Sequence[int] | None = None,
) -> None:
    """Fold `events` in order into `states` (the view's rows of their names).

    With `positions` (verify's fold), first prove that each event keeps its
    stream's rules where the fold so far says the name stands: IntegrityError
    at the first that does not.
    """
    for index, event in enumerate(events):
        key = (event.namespace, event.name)
        previous = states.get(key)
        if positions is not None:
            try:
                check_follows(None if previous is None else standing(previous), event)
            except (BrokenRule, ImmutableImage) as e:
                raise IntegrityError(
                    positions[index],
                    RULE_BROKEN,
                    f"image {event.name!r} in namespace {event.namespace!r}: {e}",
                ) from e
        try:
            states[key] = fold(previous, event)
        except (ValueError, TypeError) as e:  # a damaged or forged log
            raise StoreError(f"the log cannot be folded: {e}") from e


class RebuiltView(Protocol):
    """A view that `rebuild_views` can refold from the log."""

    def start_rebuild(self, cursor: Any) -> None:
        """Create the view's empty shadow table (dropping any left by a crash)."""

    def fold_rebuild(self, cursor: Any, recorded: Recorded) -> None:
        """Fold the next batch of the log into the shadow table."""

    def finish_rebuild(self, cursor: Any, position: int) -> None:
        """Swap the shadow table in, as the view at log `position`."""


def rebuild_views(
    transaction: Callable[[], AbstractContextManager[Any]],
    read: Callable[[Any, int], Recorded],
    head: Callable[[Any], int],
    views: Sequence[RebuiltView],
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Refold `views` from the log into shadow tables, then swap them in.

    One pass over the log for every view, a batch per write transaction
    (`read(cursor, after)` returns the next batch, after taking any lock the
    backend needs); readers and writers keep using the old tables until the
    swap, which happens in the transaction that finds no more events, so the
    new tables are exactly at the head. A crash leaves only unused shadow
    tables, dropped by the next rebuild. Returns the number of events folded.
    """
    with transaction() as c:
        for view in views:
            view.start_rebuild(c)
        total = head(c)
    position, folded = 0, 0
    while True:
        with transaction() as c:
            batch = read(c, position)
            if not batch:
                for view in views:
                    view.finish_rebuild(c, position)
                return folded
            for view in views:
                view.fold_rebuild(c, batch)
            position = batch[-1][0]
            folded += len(batch)
        if progress is not None:
            progress(folded, max(total, position))
