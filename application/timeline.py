"""A name's timeline: one band per target digest, in the order the name first
pointed at them, with a bar for each interval in which it did and a mark for
each registration, retarget, delete and immutable binding.

`timeline(entries)` folds a name's history into what timeline.html draws, in
SVG user units. What it draws is bounded whatever the length of the history
(MAX_BANDS bands, about MAX_SHAPES bars and marks of each kind), so a page's
cost is reading the history, not drawing it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from imageledger.cli_context import precise_moment
from imageledger.projections.audit import AuditEntry

MAX_BANDS = 100
"""Target digests drawn in a timeline; the table still lists every event."""

MAX_SHAPES = 2000
"""About how many bars (and marks of one kind) a timeline draws at most: past
that, intervals and events closer than a bucket of pixels merge."""

LABEL_WIDTH = 170
PLOT_WIDTH = 760
NOW_WIDTH = 40
BAND_HEIGHT = 24
TOP = 8
AXIS_HEIGHT = 34


@dataclass
class Bar:
    """Intervals of one band drawn as one rectangle (those closer than the
    timeline's bucket of pixels merge)."""

    x: float
    end: float
    intervals: int
    since: datetime
    until: datetime | None
    immutable: bool

    @property
    def width(self) -> float:
        return max(1.0, self.end - self.x)

    @property
    def title(self) -> str:
        until = "now" if self.until is None else precise_moment(self.until)
        count = "" if self.intervals == 1 else f" ({self.intervals} intervals)"
        return f"{precise_moment(self.since)} to {until}{count}"


@dataclass
class Mark:
    """Events of one kind in one bucket of pixels of a band."""

    kind: str  # registered, retargeted, deleted, immutable
    x: float
    events: int
    first: AuditEntry

    @property
    def title(self) -> str:
        entry = self.first
        more = "" if self.events == 1 else f" and {self.events - 1} more"
        return (
            f"{self.kind} at {precise_moment(entry.timestamp)} by {entry.actor} "
            f"(position {entry.position}){more}"
        )


@dataclass
class Band:
    """One target digest: when the name pointed at it, and the marks."""

    digest: str
    index: int
    bucket: float
    bars: list[Bar] = field(default_factory=list)
    marks: dict[tuple[str, int], Mark] = field(default_factory=dict)

    @property
    def y(self) -> int:
        return TOP + self.index * BAND_HEIGHT

    def bar(
        self,
        x: float,
        end: float,
        since: datetime,
        until: datetime | None,
        immutable: bool,
    ) -> None:
        last = self.bars[-1] if self.bars else None
        if last is not None and x <= last.end + self.bucket:
            last.end = max(last.end, end)
            last.intervals += 1
            last.until = until
            last.immutable = last.immutable or immutable
        else:
            self.bars.append(Bar(x, end, 1, since, until, immutable))

    def mark(self, kind: str, x: float, entry: AuditEntry) -> None:
        key = (kind, int(x // self.bucket))
        found = self.marks.get(key)
        if found is None:
            self.marks[key] = Mark(kind, x, 1, entry)
        else:
            found.events += 1


@dataclass
class Timeline:
    """What timeline.html draws: bands in order of first appearance."""

    bands: list[Band]
    hidden: int
    start: datetime | None
    end: datetime | None

    @property
    def height(self) -> int:
        return TOP + len(self.bands) * BAND_HEIGHT + AXIS_HEIGHT

    @property
    def width(self) -> int:
        return LABEL_WIDTH + PLOT_WIDTH + NOW_WIDTH

    @property
    def left(self) -> int:
        return LABEL_WIDTH

    @property
    def right(self) -> int:
        return LABEL_WIDTH + PLOT_WIDTH

    @property
    def axis(self) -> int:
        return TOP + len(self.bands) * BAND_HEIGHT + 4


@dataclass
class _Open:
    band: Band | None
    x: float
    since: datetime
    immutable: bool


def timeline(entries: list[AuditEntry]) -> Timeline:
    """The bands of a name's history (`entries` oldest first).

    Two passes over the events, and what is drawn is bounded whatever the
    length of the history: at most MAX_BANDS bands, and when the history has
    more intervals than MAX_SHAPES, bars and marks closer than a bucket of
    pixels merge, the bucket sized so that the bands hold about MAX_SHAPES
    bars and marks of each kind. A label change that keeps the target draws
    nothing.
    """
    if not entries:
        return Timeline([], 0, None, None)
    digests: set[str] = set()
    intervals, previous = 0, None
    for entry in entries:
        digest = None if entry.target is None else entry.target.digest
        if digest is not None:
            digests.add(digest)
            intervals += digest != previous
        previous = digest
    drawn = min(len(digests), MAX_BANDS)
    bucket = 1.0
    if intervals > MAX_SHAPES:
        bucket = max(1.0, drawn * (PLOT_WIDTH + NOW_WIDTH) / MAX_SHAPES)
    start, end = entries[0].timestamp, entries[-1].timestamp
    span = max((end - start).total_seconds(), 1e-6)

    def x_of(moment: datetime) -> float:
        seconds = (moment - start).total_seconds()
        return LABEL_WIDTH + PLOT_WIDTH * seconds / span

    bands: dict[str, Band] = {}
    hidden: set[str] = set()
    current: _Open | None = None
    current_digest: str | None = None

    def band_of(digest: str) -> Band | None:
        if digest in bands:
            return bands[digest]
        if len(bands) >= MAX_BANDS:
            hidden.add(digest)
            return None
        bands[digest] = Band(digest, len(bands), bucket)
        return bands[digest]

    def close(at: datetime) -> None:
        if current is not None and current.band is not None:
            current.band.bar(current.x, x_of(at), current.since, at, current.immutable)

    for entry in entries:
        x = x_of(entry.timestamp)
        if entry.target is None:  # deleted
            if current is not None:
                close(entry.timestamp)
                if current.band is not None:
                    current.band.mark("deleted", x, entry)
            current, current_digest = None, None
            continue
        digest = entry.target.digest
        if current is not None and digest == current_digest:
            if entry.immutable and not current.immutable:
                current.immutable = True
                if current.band is not None:
                    current.band.mark("immutable", x, entry)
            continue
        kind = "registered" if current is None else "retargeted"
        if current is not None:
            close(entry.timestamp)
        band = band_of(digest)
        current = _Open(band, x, entry.timestamp, entry.immutable)
        current_digest = digest
        if band is not None:
            band.mark(kind, x, entry)
            if entry.immutable:
                band.mark("immutable", x, entry)
    if current is not None and current.band is not None:
        current.band.bar(
            current.x,
            LABEL_WIDTH + PLOT_WIDTH + NOW_WIDTH,
            current.since,
            None,
            current.immutable,
        )
    return Timeline(list(bands.values()), len(hidden), start, end)


def short(digest: str) -> str:
    """A digest as a band's label: the algorithm and 12 characters."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm}:{encoded[:12]}"


def marks(band: Band) -> Iterable[Mark]:
    """A band's marks, left to right."""
    return sorted(band.marks.values(), key=lambda mark: mark.x)
