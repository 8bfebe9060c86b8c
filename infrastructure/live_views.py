"""The interface the event recorders use to keep views current in the write.

Each write transaction inserts its events, then hands them with their log
positions to every live view, on the same cursor: the view rows and the
position they reflect commit, or roll back, with the events themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from imageledger.domain.image import Image

Recorded = Sequence[tuple[int, Image.Event]]
"""Events as the log recorded them: (position, event), in log order."""


class LiveView(Protocol):
    """A view kept current inside the transaction that appends the events."""

    def apply(self, cursor: Any, recorded: Recorded) -> None:
        """Fold `recorded` into the view using `cursor`'s transaction."""
