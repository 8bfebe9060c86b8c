"""Moving images in and out of a store, and following its log.

Three ways, one concern: the whole history as a file (`export_log`,
`import_log`), OCI image layouts (what `ImageStore.import_layout` and
`export_layout` read, name and write), and `watch`, which follows the log as
other processes append to it.

The whole history: moving a store to another one, exactly.

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

OCI image layouts: the import names the entries of a layout's `index.json`
as containerd's import does (`client/import.go`,
`images/archive/reference.go`):

- `io.containerd.image.name`, when present, is the name, as it is;
- else `org.opencontainers.image.ref.name`: a bare tag (`1.0`) is joined to
  the base name (`docker.io/library/app:1.0`); a full reference (one with a
  `/`, `:` or `@`) is used as it is, except that with a base name it must be
  under it, as with `ctr images import --base-name`;
- anything else has no name and is skipped (and counted). Without a base
  name a bare tag has none: containerd would invent `import-<today>:<tag>`,
  a name that depends on the day of the import.

Each named entry is registered with its descriptor exactly as written, all in
one batch (one transaction). Like containerd's import, which updates only an
image's target, it keeps the labels a name already has; the batch is
conditional on the versions read, so a label set in between is never lost.

Watch: each new event as it is appended, by any process.

A watch starts listening before it reads the head, so nothing committed after
that read is missed; then it reads what is new whenever the log may have
grown: on SQLite after polling the head (an indexed MAX(rowid)) every fifth of
a second, on PostgreSQL when the writer's NOTIFY arrives at its commit (with
a poll every two seconds as a fallback).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import IO, Any

from eventsourcing.persistence import StoredEvent
from pydantic import BaseModel, ConfigDict

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import BrokenRule, ImmutableImage, InvalidArgument
from imageledger.domain.filters import parse
from imageledger.domain.image import ImageName, Standing, check_follows
from imageledger.domain.names import (
    validate_name,
    validate_namespace,
)
from imageledger.errors import storage_errors
from imageledger.infrastructure.errors import LogNotEmpty
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
from imageledger.ledger import Ledger
from imageledger.projections.audit import AuditEntry, audit_entry
from imageledger.projections.current_view import Image
from imageledger.projections.image_filter import event_fields

Progress = Callable[[int, int], None]
PAGE = 1000
CHAIN_DIFFERS = "hash differs: the export was altered or made by another encoding"


def export_log(log: Ledger, file: IO[Any], progress: Progress | None = None) -> int:
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
    log: Ledger,
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
    log: Ledger,
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
    log: Ledger, lines: IO[bytes], total: int, progress: Progress | None
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


# OCI image layouts.

IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


class LayoutImport(BaseModel):
    """What `import_layout` did.

    `registered`: the names it pointed at their entry's descriptor (one event
    each); `unchanged`: the names that already pointed there (nothing written),
    both in `index.json` order, as the import left them. `skipped`: the
    entries that have no name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    registered: list[Image]
    unchanged: list[Image]
    skipped: int


def validate_path(path: object) -> None:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidArgument("path", "must be a non-empty path to a layout")


def validate_base_name(base_name: object) -> str | None:
    if base_name is None:
        return None
    try:
        validate_name(base_name)
    except InvalidArgument as e:
        raise InvalidArgument("base_name", e.rule) from None
    assert isinstance(base_name, str)
    remainder = base_name.partition("@")[0]
    if remainder != base_name or remainder.rfind(":") > remainder.rfind("/"):
        raise InvalidArgument(
            "base_name",
            f"{base_name!r} has a tag or digest; give a repository name, "
            "like docker.io/library/app",
        )
    return base_name


def named_entries(
    descriptors: list[Descriptor], base: str | None
) -> tuple[list[tuple[str, Descriptor]], int]:
    """(name, descriptor) of each named entry in order, and the number skipped.

    A name given twice with the same descriptor counts once; with another
    descriptor the layout is ambiguous, and InvalidArgument says so.
    """
    named: dict[str, tuple[int, Descriptor]] = {}
    skipped = 0
    for position, descriptor in enumerate(descriptors):
        where = f"index.json manifests[{position}]"
        name = image_name(descriptor.annotations or {}, base)
        if name is None:
            skipped += 1
            continue
        try:
            validate_name(name)
        except InvalidArgument as e:
            raise InvalidArgument(f"{where} name", e.rule) from None
        first = named.setdefault(name, (position, descriptor))
        if first[1] != descriptor:
            raise InvalidArgument(
                where,
                f"names {name!r}, as manifests[{first[0]}] does, "
                "with another descriptor",
            )
    return [(name, descriptor) for name, (_, descriptor) in named.items()], skipped


def image_name(annotations: Mapping[str, str], base: str | None) -> str | None:
    """The name containerd's import gives an entry with `annotations`, or None."""
    name = annotations.get(IMAGE_NAME)
    if name:
        return name
    ref = annotations.get(REF_NAME)
    if not ref:
        return None
    if not any(c in ref for c in "/:@"):
        return None if base is None else f"{base}:{ref}"
    if base is None or _under(ref, base):
        return ref
    # ctr's `--base-name nginx` also keeps docker.io/library/nginx:latest.
    last = ref.rsplit("/", 1)[-1]
    if last.startswith(base) and (len(last) == len(base) or last[len(base)] in ":@"):
        return ref
    return None


def _under(ref: str, base: str) -> bool:
    return ref.startswith(base) and (len(ref) == len(base) or ref[len(base)] in "/:@")


def entry(image: Image) -> dict[str, Any]:
    entry = image.target.to_oci()
    entry["annotations"] = {
        **entry.get("annotations", {}),
        REF_NAME: reference_name(image.name),
        IMAGE_NAME: image.name,
    }
    return entry


def reference_name(name: str) -> str:
    """The `org.opencontainers.image.ref.name` of `name`: its tag (and digest, if
    it has both), as containerd's export writes it; the whole name without a tag."""
    remainder = name.partition("@")[0]
    colon = remainder.rfind(":")
    return name[colon + 1 :] if colon > remainder.rfind("/") else name


# Following the log.

Match = Callable[[ImageName.Event], bool]


def validate(
    after: object, namespace: object, filters: Iterable[str], poll_interval: object
) -> tuple[int | None, Match, float | None]:
    """ImageStore.watch's arguments checked: (after, which events, interval)."""
    if after is not None and (
        not isinstance(after, int) or isinstance(after, bool) or after < 0
    ):
        raise InvalidArgument("after", "must be a log position (0 or more)")
    if poll_interval is not None and not (
        isinstance(poll_interval, (int, float))
        and not isinstance(poll_interval, bool)
        and 0 < poll_interval <= 3600
    ):
        raise InvalidArgument("poll_interval", "must be seconds, up to 3600")
    checked = None if namespace is None else validate_namespace(namespace)
    return after, event_filter(checked, list(filters)), poll_interval


def event_filter(namespace: str | None, filters: Sequence[str]) -> Match:
    """Which events a watch shows: of `namespace` (None: every one), and
    matching `filters`."""
    parsed = parse(*filters)  # InvalidArgument (with the position) if malformed

    def matches(event: ImageName.Event) -> bool:
        if namespace is not None and event.namespace != namespace:
            return False
        return parsed.matches_all or parsed.matches(event_fields(event))

    return matches


class Watch(Iterator[AuditEntry]):
    """Audit entries of the events after a position, in log order, as they are
    appended; never ends. It starts at the head when it is made (or after the
    position given); `close()` stops it and releases what it listens with."""

    def __init__(
        self,
        log: Ledger,
        after: int | None,
        match: Match,
        poll_interval: float | None,
    ) -> None:
        with storage_errors():
            self._wakeup = log.wakeup()  # first: an append after the head wakes it
            try:
                self._position = log.head() if after is None else after
            except BaseException:
                self._wakeup.close()
                raise
        self._log = log
        self._match = match
        self._interval = (
            self._wakeup.interval if poll_interval is None else poll_interval
        )
        self._entries = self._follow()

    def __next__(self) -> AuditEntry:
        with storage_errors():
            return next(self._entries)

    def close(self) -> None:
        """Stop watching."""
        self._entries.close()
        self._wakeup.close()

    def _follow(self) -> Generator[AuditEntry, None, None]:
        log = self._log
        while True:
            if log.head() <= self._position:
                self._wakeup.wait(self._interval)
                continue
            for position, event in log.read(after=self._position):
                self._position = position
                if self._match(event):
                    yield audit_entry(position, event)
