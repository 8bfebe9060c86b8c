"""Checkpoints and verification of the log, as the image store offers them.

A checkpoint is `(position, head)`: the log's last position and the hash
chain's link there, `sha256:` and 64 lowercase hex digits. Its text form is
`POSITION:HEAD`, e.g. `12:sha256:3b0c...`. Keep one somewhere else (a ticket,
a signed tag, a second machine): `verify(checkpoint)` then proves that the log
still reaches that position with that head, so nothing up to it was rewritten.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from imageledger.domain.errors import InvalidArgument
from imageledger.infrastructure.hash_chain import HEAD_PREFIX, head_text
from imageledger.infrastructure.rows import AUDIT_VIEW, CURRENT_VIEW
from imageledger.ledger import Ledger

_TEXT = re.compile(r"(0|[1-9][0-9]*):(?:sha256:)?([0-9a-f]{64})", re.ASCII)
_HEAD = re.compile(r"(?:sha256:)?([0-9a-f]{64})", re.ASCII)


class Checkpoint(NamedTuple):
    """A log position and the chain's head there; `str()` gives `POSITION:HEAD`."""

    position: int
    head: str

    def __str__(self) -> str:
        return f"{self.position}:{self.head}"


class VerifyReport(BaseModel):
    """What `verify()` checked and found sound.

    `events` is the number of events whose links were recomputed, `position`
    the last log position and `head` the chain's link there (the checkpoint to
    keep for next time). `checkpoint` is the one given, now proved. `views` are
    the views found equal to the fold of the log, at its last position.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    events: int
    position: int
    head: str
    checkpoint: Checkpoint | None
    views: tuple[str, ...]


def checkpoint(log: Ledger) -> Checkpoint:
    """The log's last position and the chain's head there."""
    position, head = log.checkpoint()
    return Checkpoint(position, head_text(head))


def verify(log: Ledger, given: object = None) -> VerifyReport:
    """Check the chain, `given` (a checkpoint) if any, and the views; see ImageStore."""
    parsed = None if given is None else parse_checkpoint(given)
    walk = log.verify(parsed)
    return VerifyReport(
        events=walk.events,
        position=walk.position,
        head=head_text(walk.head),
        checkpoint=None
        if parsed is None
        else Checkpoint(parsed[0], head_text(parsed[1])),
        views=(CURRENT_VIEW, AUDIT_VIEW),
    )


def parse_checkpoint(value: object) -> tuple[int, bytes]:
    """`(position, head)` or `"POSITION:HEAD"` as (position, head bytes).

    The head may be given with or without its `sha256:` prefix. Anything else
    raises InvalidArgument.
    """
    if isinstance(value, str):
        match = _TEXT.fullmatch(value.strip().lower())
        if match is None:
            raise InvalidArgument(
                "checkpoint",
                f"{value!r} is not POSITION:HEAD " f"(e.g. 12:{HEAD_PREFIX}{'0' * 64})",
            )
        return int(match[1]), bytes.fromhex(match[2])
    if not isinstance(value, tuple) or len(value) != 2:
        raise InvalidArgument(
            "checkpoint",
            f"must be (position, head) or 'POSITION:HEAD', not {type(value).__name__}",
        )
    position, head = value
    if not isinstance(position, int) or isinstance(position, bool) or position < 0:
        raise InvalidArgument(
            "checkpoint", f"the position must be a whole number >= 0, not {position!r}"
        )
    if isinstance(head, bytes) and len(head) == 32:
        return position, head
    match = _HEAD.fullmatch(head.lower()) if isinstance(head, str) else None
    if match is None:
        raise InvalidArgument(
            "checkpoint",
            f"the head must be {HEAD_PREFIX} and 64 hex digits, not {head!r}",
        )
    return position, bytes.fromhex(match[1])
