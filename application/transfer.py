"""Export and import of the whole log: moving a store to another one, exactly.

`export_log` writes every event as one line of the history file (see
infrastructure/export_format), with its stored hash-chain link. `import_log`
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

Memory: both stream. The import reads the file twice: once to check every
line and the chain (copying it to a temporary file as it goes, so stdin
works too), then to append the events a page at a time, all in one write
transaction (all or nothing). What it keeps is a few numbers per name.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterator
from itertools import islice
from typing import IO, Any

from eventsourcing.persistence import StoredEvent

from imageledger.domain.errors import BrokenRule, ImmutableImage, InvalidArgument
from imageledger.domain.image import ImageName, Standing, check_follows
from imageledger.infrastructure.errors import LogNotEmpty
from imageledger.infrastructure.event_log import EventLog
from imageledger.infrastructure.export_format import (
    CHAIN,
    MAX_LINE_BYTES,
    HistoryLine,
    capped_lines,
    decode_line,
    encode_line,
    validate_max_line_bytes,
)
from imageledger.infrastructure.hash_chain import GENESIS, chain_links

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


def import_log(
    log: EventLog,
    file: IO[Any],
    progress: Progress | None = None,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> int:
    """Replay a history file into the empty store of `log`; return the events.

    Raises LogNotEmpty (a Conflict) if the store has events, InvalidArgument
    naming the line and field of the first bad line (or the first line over
    `max_line_bytes`, refused as it is read); nothing is written then.
    `progress(done, total)` counts lines checked, then events appended.
    """
    _require_file(file, "read")
    max_line_bytes = validate_max_line_bytes(max_line_bytes)
    if log.head():
        raise LogNotEmpty
    with tempfile.TemporaryFile() as checked:
        total = _check(log, file, checked, progress, max_line_bytes)
        checked.seek(0)
        pages = _pages(log, checked, total, progress)
        log.append_to_empty(pages)
    return total


def _check(
    log: EventLog,
    file: IO[Any],
    copy: IO[bytes],
    progress: Progress | None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> int:
    """Check every line of `file` and the chain, copying the lines to `copy`;
    return the number of lines."""
    sequence = _Sequence()
    previous = GENESIS
    number = 0
    for number, line in capped_lines(file, max_line_bytes):
        data = line.encode() if isinstance(line, str) else line
        decoded = decode_line(number, data)
        sequence.add(decoded)
        stored = log.to_stored([decoded.event])
        ((_, previous),) = chain_links(previous, [number], stored)
        if decoded.chain is not None and decoded.chain != previous:
            raise InvalidArgument(f"line {number}: {CHAIN}", CHAIN_DIFFERS)
        copy.write(data if data.endswith(b"\n") else data + b"\n")
        if progress is not None and number % PAGE == 0:
            progress(number, number)  # the total is not known yet
    return number


def _pages(
    log: EventLog, lines: IO[bytes], total: int, progress: Progress | None
) -> Iterator[tuple[list[StoredEvent], list[ImageName.Event]]]:
    """The checked lines again, as pages of (stored, domain) events."""
    done = 0
    numbered = enumerate(lines, start=1)
    while page := list(islice(numbered, PAGE)):
        events = [decode_line(number, line).event for number, line in page]
        yield log.to_stored(events), events
        done += len(events)
        if progress is not None:
            progress(done, total)
    if progress is not None and not total:
        progress(0, 0)


class _Sequence:
    """The lines read so far, checked against each other as they come: the
    positions increase, and each event keeps its stream's rules (the domain's
    `check_follows`, which every live write passes too)."""

    def __init__(self) -> None:
        self._position: int | None = None
        self._names: dict[tuple[str, str], Standing] = {}

    def add(self, line: HistoryLine) -> None:
        """Check `line` follows the lines before it; keep it."""
        event, number = line.event, line.number
        if self._position is not None and line.position <= self._position:
            raise InvalidArgument(
                f"line {number}: position",
                f"{line.position} does not follow position "
                f"{self._position}: positions must increase",
            )
        key = (event.namespace, event.name)
        standing = self._names.get(key)
        try:
            check_follows(standing, event)
        except BrokenRule as e:
            raise InvalidArgument(f"line {number}: {e.field}", e.problem) from None
        except ImmutableImage as e:
            raise InvalidArgument(f"line {number}: target", str(e)) from None
        if isinstance(event, ImageName.Registered):
            bound = event.target if event.immutable else None
            self._names[key] = Standing(
                event.originator_version, True, bound, event.timestamp
            )
        else:
            self._names[key] = Standing(
                event.originator_version,
                False,
                None if standing is None else standing.bound,
                event.timestamp,
            )
        self._position = line.position


_DOING = {"read": "reading", "write": "writing"}


def _require_file(file: object, method: str) -> None:
    # A path given where a file object belongs would be read character by
    # character as lines, or fail deep inside with an AttributeError.
    if isinstance(file, str | bytes | os.PathLike) or not callable(
        getattr(file, method, None)
    ):
        raise InvalidArgument(
            "file",
            f"must be a file object open for {_DOING[method]} (binary or text), "
            f"not {type(file).__name__}",
        )


def _writer(file: IO[Any]) -> Callable[[bytes], object]:
    _require_file(file, "write")
    if isinstance(file, io.TextIOBase):
        return lambda line: file.write(line.decode())
    return file.write
