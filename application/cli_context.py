"""What every command shares: the global options, parsing helpers, and how
results are shown (aligned tables for people, JSON for scripts).

Data goes to stdout, progress to stderr. The output is the same whether or not
stdout is a terminal, so what a person sees is what a script parsing the table
gets; `--json` is the stable form for scripts (OCI field names for descriptors).
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import click

from imageledger.errors import InvalidArgument

if TYPE_CHECKING:  # the command line starts without pydantic or the store
    from imageledger.projections.audit import AuditEntry
    from imageledger.projections.current_view import Image
    from imageledger.reads import StoredEntry, StoredImage, StoredReads
    from imageledger.store import ImageStore

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_VERIFY = 5

# Long enough for any real path or name; garbage beyond it is cut.
_LONG_QUOTES = (re.compile(r"(')([^']{257,})'"), re.compile(r'(")([^"]{257,})"'))
_MAX_LINE = 1_000

ACTOR_HELP = "Who makes the change. [default: $IMAGELEDGER_ACTOR, else the user]"


@dataclass(frozen=True)
class Settings:
    """The global options, shared by every command."""

    db: str | None
    namespace: str
    json: bool

    @contextmanager
    def store(self) -> Iterator[ImageStore]:
        from imageledger.store import ImageStore  # heavy: only for commands that use it

        with ImageStore.open(self.db) as opened:
            yield opened

    @contextmanager
    def reads(self) -> Iterator[StoredReads | None]:
        """The stored reads of the store, or None where it is to be opened
        as an ImageStore (see imageledger.reads)."""
        from imageledger.reads import open_reads

        reads = open_reads(self.db)
        if reads is None:
            yield None
            return
        with reads:
            yield reads


pass_settings = click.make_pass_decorator(Settings)


class AlreadyReported(Exception):
    """Raised after a command printed its own errors; carries the exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@contextmanager
def flag_names(flags: dict[str, str]) -> Iterator[None]:
    """Name a bad argument by the option that gave it (--digest, not target.digest)."""
    try:
        yield
    except InvalidArgument as e:
        if e.field in flags:
            raise InvalidArgument(flags[e.field], e.rule) from e
        raise


def error_line(message: str) -> None:
    """Print `message` as one `Error:` line on stderr, control characters escaped.

    Usage errors quote the argument whole; a long one is cut, so that a
    megabyte of garbage in argv gives a short line, not a megabyte of error.
    """
    one_line = " ".join(message.splitlines())
    for quoted in _LONG_QUOTES:
        one_line = quoted.sub(_cut, one_line)
    if len(one_line) > _MAX_LINE:
        one_line = f"{one_line[:_MAX_LINE]}... ({len(one_line):,} characters)"
    click.echo(f"Error: {printable(one_line)}", err=True)


def _cut(match: re.Match[str]) -> str:
    quote, text = match[1], match[2]
    return f"{quote}{text[:60]}...{quote} ({len(text):,} characters)"


def echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise InvalidArgument(option, f"expected KEY=VALUE, got {value!r}")
        if key in pairs:
            raise InvalidArgument(option, f"{key!r} is given twice")
        pairs[key] = text
    return pairs


class WhenType(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2
    """A point of the log: an integer log position, or an RFC 3339 timestamp or
    date (a date means midnight UTC at its start; no offset means UTC)."""

    name = "WHEN"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int | datetime:
        if isinstance(value, int | datetime):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{text!r} is neither a log position nor an RFC 3339 timestamp or "
                "date (e.g. 42, 2026-11-28T09:00:00Z, 2026-11-28)",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


WHEN = WhenType()


# Showing results.

LIST_COLUMNS = ("NAME", "DIGEST", "MEDIATYPE", "SIZE", "UPDATED")
GET_COLUMNS = (*LIST_COLUMNS, "VERSION", "IMMUTABLE", "LABELS")
HISTORY_COLUMNS = (
    "POSITION",
    "VERSION",
    "KIND",
    "DIGEST",
    "TIMESTAMP",
    "ACTOR",
    "REASON",
)
# What a terminal may act on instead of showing: C0 and C1 controls (U+009B is
# a one-byte CSI), format characters (the bidi overrides such as U+202E, zero
# widths, tag characters), line and paragraph separators, and lone surrogates
# (which no terminal encoding can carry). Everything else is shown as it is.
_UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_SHORT_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
# Runs that may hold an unsafe character: everything but printable ASCII.
_SUSPECT = re.compile(r"[^\x20-\x7e]+")


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """Lines of an aligned table: UPPERCASE headers, two spaces between columns.

    The rows are materialised to size the columns, so callers stream large
    results in `--json` or `-q` form instead.
    """
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [list(columns), *cells]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        yield "  ".join(padded).rstrip()


def image_row(image: Image, *, detailed: bool = False) -> list[str]:
    """One table row of an image (`get` adds version, immutability and labels)."""
    target = image.target
    return _image_cells(
        image.name,
        (target.digest, target.media_type, target.size),
        image.updated_at,
        (image.version, image.immutable, image.labels) if detailed else None,
    )


def stored_image_row(image: StoredImage, *, detailed: bool = False) -> list[str]:
    """`image_row` of a stored image (see imageledger.reads)."""
    target = image["target"]
    return _image_cells(
        image["name"],
        (target["digest"], target["mediaType"], target["size"]),
        image["updated_at"],
        (image["version"], image["immutable"], image["labels"]) if detailed else None,
    )


def _image_cells(
    name: str,
    target: tuple[str, str, int],
    updated_at: datetime,
    details: tuple[int, bool, dict[str, str]] | None,
) -> list[str]:
    digest, media_type, size = target
    row = [name, digest, media_type, str(size), moment(updated_at)]
    if details is not None:
        version, immutable, labels = details
        shown = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        row += [str(version), "yes" if immutable else "no", shown or "-"]
    return row


def history_row(entry: AuditEntry) -> list[str]:
    """One table row of an audit entry; its kind says `(immutable)` for a
    registration of an immutable name and `(forced)` for a forced delete."""
    return _history_cells(
        (entry.position, entry.version, entry.kind, entry.forced, entry.immutable),
        entry.target.digest if entry.target is not None else None,
        entry.timestamp,
        entry.actor,
        entry.reason,
    )


def stored_history_row(entry: StoredEntry) -> list[str]:
    """`history_row` of a stored entry (see imageledger.reads)."""
    return _history_cells(
        (
            entry["position"],
            entry["version"],
            entry["kind"],
            entry["forced"],
            entry["immutable"],
        ),
        entry["digest"],
        entry["timestamp"],
        entry["actor"],
        entry["reason"],
    )


def _history_cells(
    event: tuple[int, int, str, bool, bool],
    digest: str | None,
    timestamp: datetime,
    actor: str,
    reason: str | None,
) -> list[str]:
    position, version, kind, forced, immutable = event
    if forced:
        kind += " (forced)"
    elif immutable:
        kind += " (immutable)"
    return [
        str(position),
        str(version),
        kind,
        digest if digest is not None else "-",
        moment(timestamp),
        actor,
        reason or "-",
    ]


def image_json(image: Image) -> dict[str, Any]:
    """An image as JSON: the descriptor in OCI form, times in RFC 3339 UTC."""
    return {
        "namespace": image.namespace,
        "name": image.name,
        "target": image.target.to_oci(),
        "labels": image.labels,
        "immutable": image.immutable,
        "createdAt": precise_moment(image.created_at),
        "updatedAt": precise_moment(image.updated_at),
        "version": image.version,
    }


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as JSON (target and labels are null for a delete).

    `immutable` is whether the name is immutable after the event; `forced`
    marks a delete that overrode it.
    """
    return {
        "position": entry.position,
        "namespace": entry.namespace,
        "name": entry.name,
        "version": entry.version,
        "kind": entry.kind,
        "target": entry.target.to_oci() if entry.target is not None else None,
        "labels": entry.labels,
        "immutable": entry.immutable,
        "forced": entry.forced,
        "timestamp": precise_moment(entry.timestamp),
        "actor": entry.actor,
        "reason": entry.reason,
    }


def document(value: Any) -> str:
    """A single result: one indented JSON document (see terminal_safe_json)."""
    return terminal_safe_json(json.dumps(value, indent=2, ensure_ascii=False))


def json_line(value: Any) -> str:
    """One record of a stream: compact JSON on one line (JSON lines)."""
    return terminal_safe_json(
        json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    )


def terminal_safe_json(text: str) -> str:
    """JSON text with what `printable` escapes written as \\u escapes.

    JSON requires escaping only C0 controls; C1 controls, DEL, format (bidi)
    characters, line separators and lone surrogates are written as `\\u009b`,
    `\\u202e`, ... as well, so that `--json` output on a terminal is as safe
    as a table. Any JSON parser reads back the same strings. Other non-ASCII
    text (é, 中) stays as it is. Such characters can only be inside strings:
    JSON's own syntax is ASCII.
    """
    if text.isascii() and text.isprintable():
        return text
    return _SUSPECT.sub(_json_escape_run, text)


def _json_escape_run(match: re.Match[str]) -> str:
    return "".join(_json_escaped(c) if c != "\n" and unsafe(c) else c for c in match[0])


def _json_escaped(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # a UTF-16 surrogate pair
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def moment(when: datetime) -> str:
    """A timestamp for people: RFC 3339 UTC to the second."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_moment(when: datetime) -> str:
    """A timestamp for scripts: RFC 3339 UTC to the microsecond."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def progress(
    label: str, stream: TextIO | None = None
) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback drawing a bar on stderr, or None when stderr is not a
    terminal (piped or redirected output stays quiet)."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield None
        return
    drawn = False

    def draw(done: int, total: int) -> None:
        nonlocal drawn
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        out.write(f"\r{label} [{bar}] {fraction:4.0%}  {done:,}/{total:,} events")
        out.flush()
        drawn = True

    try:
        yield draw
    finally:
        if drawn:
            out.write("\n")
            out.flush()


def printable(text: str) -> str:
    """`text` with every character a terminal could act on escaped (`\\x1b`,
    `\\x9b`, `\\u202e`, `\\n`), safe to print on one line.

    The one rule for every table, stream row and error line: a name or reason
    with a newline must not break a table's lines, and an escape sequence or a
    bidi override in an actor, reason or label must not reach the terminal.
    """
    if text.isprintable():  # the common case; False for every unsafe character
        return text
    return _SUSPECT.sub(_escape_run, text)


def unsafe(char: str) -> bool:
    """Whether a terminal could act on `char` (see printable)."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def _escape_run(match: re.Match[str]) -> str:
    return "".join(_escaped(c) if unsafe(c) else c for c in match[0])


def _escaped(char: str) -> str:
    code = ord(char)
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
