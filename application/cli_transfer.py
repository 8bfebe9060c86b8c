"""The commands that move and follow the log: export, import, watch."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import click

from imageledger.cli_context import Settings, flag_names, pass_settings
from imageledger.cli_render import (
    document,
    entry_json,
    json_line,
    moment,
    printable,
    progress,
)

# The line cap, without importing the history format (and pydantic) at start.
MAX_LINE_BYTES = 16 * 1024 * 1024

if TYPE_CHECKING:  # the command line starts without pydantic or the store
    from imageledger.projections.audit import AuditEntry

# A stream has no end to size its columns by: these fit a position in the
# millions, a sha256 digest and a second-precision timestamp; longer cells
# push the rest of their row to the right.
WATCH_COLUMNS = (
    ("POSITION", 8),
    ("NAME", 30),
    ("VERSION", 7),
    ("KIND", 10),
    ("DIGEST", 71),
    ("TIMESTAMP", 20),
    ("ACTOR", 12),
    ("REASON", 0),
)


@click.command("export")
@click.argument("file", default="-", metavar="[FILE|-]")
@pass_settings
def export(settings: Settings, file: str) -> None:
    """Write the whole log to FILE (default: stdout) as JSON lines.

    One event a line, oldest first, with its position, timestamp, actor,
    reason and hash-chain link: `import` replays it into a new store, on
    SQLite or PostgreSQL, with the same history and checkpoint head. A FILE
    is written whole or not at all.

    \b
    Examples:
      imageledger export history.jsonl
      imageledger --db postgresql://ledger@db/images import history.jsonl
    """
    with settings.store() as store, progress("exporting") as report:
        if file == "-":
            stdout = sys.stdout.buffer
            store.export_log(stdout, progress=report)
            stdout.flush()
            return
        with _opened(file, "wb", atomic=True) as out:
            events = store.export_log(out, progress=report)
    if settings.json:
        click.echo(document({"events": events, "file": file}))
    else:
        click.echo(f"exported {events:,} events to {printable(file)}")


@click.command("import")
@click.argument("file", metavar="FILE|-")
@click.option(
    "--max-line-bytes",
    type=int,
    default=MAX_LINE_BYTES,
    show_default=True,
    metavar="N",
    help="Refuse a line longer than N bytes (the default is twice the "
    "largest legal event).",
)
@pass_settings
def import_log(settings: Settings, file: str, max_line_bytes: int) -> None:
    """Replay a file written by `export` into this store, which must be empty.

    Keeps every event's timestamp, actor, reason and order; checks each line
    and the hash-chain link it carries, and writes all events in one
    transaction or none. Exits 2 naming the first bad line (a line over
    --max-line-bytes is refused as it is read), 4 if the store already has
    events.

    \b
    Example:
      imageledger --db new.db import history.jsonl && imageledger --db new.db verify
    """
    with (
        _opened(file, "rb") as source,
        settings.store() as store,
        progress("importing") as report,
        flag_names({"max_line_bytes": "--max-line-bytes"}),
    ):
        events = store.import_log(
            source, progress=report, max_line_bytes=max_line_bytes
        )
    if settings.json:
        click.echo(document({"events": events}))
    else:
        click.echo(f"imported {events:,} events")


@click.command()
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option(
    "--after", type=int, metavar="POS", help="First replay the events after POS."
)
@pass_settings
def watch(settings: Settings, filters: Sequence[str], after: int | None) -> None:
    """Print each new event of the namespace as it is appended, by any process.

    Starts at the log's head, or after position POS; runs until interrupted
    (Ctrl-C or SIGTERM, exit 0). One table row a line, or JSON lines with
    --json, each written as it comes.

    \b
    Examples:
      imageledger watch
      imageledger --json watch --after 0 | jq -r 'select(.kind=="deleted") | .name'
    """
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with (
            settings.store() as store,
            flag_names({"after": "--after"}),
            closing(
                store.watch(after, namespace=settings.namespace, filters=filters)
            ) as entries,
        ):
            _print_stream(entries, settings.json)
    except KeyboardInterrupt:
        pass  # how a watch ends: quietly, with success
    finally:
        signal.signal(signal.SIGTERM, previous)


def _print_stream(entries: Iterator[AuditEntry], as_json: bool) -> None:
    if as_json:
        for entry in entries:
            click.echo(json_line(entry_json(entry)))  # echo flushes each line
        return
    click.echo(_row([title for title, _ in WATCH_COLUMNS]))
    for entry in entries:
        click.echo(_row(_watch_cells(entry)))


def _watch_cells(entry: AuditEntry) -> list[str]:
    return [
        str(entry.position),
        entry.name,
        str(entry.version),
        entry.kind,
        entry.target.digest if entry.target is not None else "-",
        moment(entry.timestamp),
        entry.actor,
        entry.reason or "-",
    ]


def _row(cells: Sequence[str]) -> str:
    padded = (
        printable(cell).ljust(width)
        for cell, (_, width) in zip(cells, WATCH_COLUMNS, strict=True)
    )
    return "  ".join(padded).rstrip()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _opened(file: str, mode: str, *, atomic: bool = False) -> Iterator[IO[Any]]:
    """The file (or stdin/stdout for '-'), or a one-line error naming it."""
    try:
        opened = click.open_file(file, mode, atomic=atomic)
    except OSError as e:
        raise click.FileError(file, e.strerror) from e
    with opened as handle:
        yield handle
