"""Export and import of the whole log: moving a store to another one, exactly.

`export_log` writes every event as one line of the history file (see
infrastructure/history_format), with its stored hash-chain link. `import_log`
reads such a file into an empty store: it validates every line and the rules
between lines, rebuilds each event with its exported timestamp, version and
actor, recomputes the chain over the bytes it is about to store and compares
it with the exported links, then appends everything in one transaction. The
new store then has the same history, the same chain and the same checkpoint
head as the old one, whatever the two backends.

Positions: the target numbers its events 1, 2, 3, ... in file order. A source
on SQLite has exactly those positions; one on PostgreSQL has them too unless
a rolled-back write left a gap in its numbering, which the import closes. The
chain does not hash positions, so the heads agree either way.

Memory: the import holds the whole file's events until its single
transaction commits (all or nothing): about 5 KB an event at the peak,
measured on 100,000 events. The export streams, a page at a time.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import IO, Any

from imageledger.domain.errors import InvalidArgument
from imageledger.domain.image import Image
from imageledger.infrastructure.event_log import EventLog, LogNotEmpty
from imageledger.infrastructure.hash_chain import GENESIS, chain_links
from imageledger.infrastructure.history_format import (
    CHAIN,
    HistoryLine,
    decode_line,
    encode_line,
)

Progress = Callable[[int, int], None]
PAGE = 1000
CHAIN_DIFFERS = "hash differs: the export was altered or made by another encoding"


def export_log(log: EventLog, file: IO[Any], progress: Progress | None = None) -> int:
    """Write every event up to the log's head now to `file`; return how many.

    `file` is a binary file, or a text file (an io.TextIOBase, such as
    sys.stdout) that gets the same lines as text.
    """
    write = _writer(file)
    head = log.head()  # later appends are not part of this export
    done, reported = 0, None
    events = log.read(until=head)
    while page := list(islice(events, PAGE)):
        links = log.links(page[0][0] - 1, page[-1][0])
        for position, event in page:
            write(encode_line(position, event, links.get(position)))
        done += len(page)
        if progress is not None:
            progress(done, max(head, done))
            reported = done
    if progress is not None and reported != done:  # an empty log
        progress(done, done)
    return done


def import_log(log: EventLog, file: IO[Any], progress: Progress | None = None) -> int:
    """Replay a history file into the empty store of `log`; return the events.

    Raises LogNotEmpty (a Conflict) if the store has events, InvalidArgument
    naming the line and field of the first bad line; nothing is written then.
    """
    if log.head():
        raise LogNotEmpty
    lines = file.readlines()
    total = len(lines)
    checked = _Sequence()
    for number, line in enumerate(lines, start=1):
        checked.add(decode_line(number, line))
        if progress is not None and number % PAGE == 0:
            progress(number, total)
    del lines
    events = [line.event for line in checked.lines]
    stored = log.to_stored(events)
    links = chain_links(GENESIS, range(1, len(stored) + 1), stored)
    for line, (_, computed) in zip(checked.lines, links, strict=True):
        if line.chain is not None and line.chain != computed:
            raise InvalidArgument(f"line {line.number}: {CHAIN}", CHAIN_DIFFERS)
    log.append_to_empty(stored, events)
    if progress is not None:
        progress(total, total)
    return len(events)


@dataclass
class _Name:
    """What the lines so far say about one name."""

    version: int
    live: bool
    timestamp: datetime


class _Sequence:
    """The lines read so far, checked against each other as they come."""

    def __init__(self) -> None:
        self.lines: list[HistoryLine] = []
        self._names: dict[tuple[str, str], _Name] = {}

    def add(self, line: HistoryLine) -> None:
        """Check `line` follows the lines before it; keep it."""
        event, number = line.event, line.number
        if self.lines and line.position <= self.lines[-1].position:
            raise InvalidArgument(
                f"line {number}: position",
                f"{line.position} does not follow position "
                f"{self.lines[-1].position}: positions must increase",
            )
        key = (event.namespace, event.name)
        name = self._names.get(key)
        expected = 1 if name is None else name.version + 1
        if event.originator_version != expected:
            raise InvalidArgument(
                f"line {number}: version",
                f"{event.originator_version} is not the next version of "
                f"{event.name!r} in namespace {event.namespace!r}: expected "
                f"{expected}",
            )
        registered = isinstance(event, Image.Registered)
        if not registered and (name is None or not name.live):
            raise InvalidArgument(
                f"line {number}: kind",
                f"{event.name!r} in namespace {event.namespace!r} is deleted "
                "but does not exist at that point",
            )
        if name is not None and event.timestamp < name.timestamp:
            raise InvalidArgument(
                f"line {number}: timestamp",
                f"is earlier than the previous event of {event.name!r} in "
                f"namespace {event.namespace!r}",
            )
        self._names[key] = _Name(expected, registered, event.timestamp)
        self.lines.append(line)


def _writer(file: IO[Any]) -> Callable[[bytes], object]:
    if isinstance(file, io.TextIOBase):
        return lambda line: file.write(line.decode())
    return file.write
