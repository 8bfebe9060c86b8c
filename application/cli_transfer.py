"""The commands that move images in and out and follow the log: export,
import, watch, import-layout and export-layout."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

import click

from imageledger.cli_context import (
    ACTOR_HELP,
    Settings,
    document,
    echo_lines,
    entry_json,
    flag_names,
    image_json,
    json_line,
    moment,
    pass_settings,
    printable,
    progress,
    table,
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
    # Both signals explicitly, as serve and follow take them: Python leaves
    # SIGINT alone when it starts with SIGINT ignored (a child of a shell
    # script's background job), and the watch would not stop on it.
    previous = {
        number: signal.signal(number, _interrupt)
        for number in (signal.SIGINT, signal.SIGTERM)
    }
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
        for number, handler in previous.items():
            signal.signal(number, handler)


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


# OCI image layouts.

IMPORT_COLUMNS = ("NAME", "DIGEST", "RESULT")


@click.command(name="import-layout")
@click.argument("layout", metavar="DIR")
@click.option(
    "--base-name",
    metavar="NAME",
    help="Join bare tags in org.opencontainers.image.ref.name to NAME "
    "(docker.io/library/app + 1.0 is docker.io/library/app:1.0).",
)
@click.option(
    "--no-blob-check",
    is_flag=True,
    help="Do not require each entry's blob in blobs/ (for metadata-only layouts, "
    "such as export-layout writes).",
)
@click.option("--actor", help=ACTOR_HELP)
@click.option("--reason", help="Why, for the audit log.")
@click.option(
    "--max-members",
    type=int,
    metavar="N",
    help="Refuse an oci-archive of more than N members.  [default: 100000]",
)
@click.option(
    "--max-header-bytes",
    type=int,
    metavar="N",
    help="Refuse a tar extended (PAX) header over N bytes.  [default: 1 MiB]",
)
@click.option(
    "--max-blob-bytes",
    type=int,
    metavar="N",
    help="Refuse an entry whose blob is over N bytes.  [default: 64 MiB]",
)
@click.option(
    "--max-total-bytes",
    type=int,
    metavar="N",
    help="Refuse a layout whose entries' blobs are over N bytes in all.  "
    "[default: 1 GiB]",
)
@pass_settings
def import_layout(
    settings: Settings,
    layout: str,
    base_name: str | None,
    no_blob_check: bool,
    actor: str | None,
    reason: str | None,
    max_members: int | None,
    max_header_bytes: int | None,
    max_blob_bytes: int | None,
    max_total_bytes: int | None,
) -> None:
    """Register the images of an OCI image layout (a directory or an oci-archive tar).

    Names each index.json entry as containerd's import does: its
    io.containerd.image.name annotation, else its
    org.opencontainers.image.ref.name (a bare tag joined to --base-name; a
    full reference as it is, if under --base-name). Entries without a name are
    skipped and counted. Each entry's blob must be in the layout with the
    entry's size and digest. All names are registered in one transaction,
    keeping their labels; importing the same layout again writes nothing.

    \b
    Examples:
      imageledger import-layout ./app-layout --base-name docker.io/library/app
      imageledger import-layout app.tar --reason "release 1.4.2"
      imageledger import-layout ./exported --no-blob-check
    """
    caps = {
        "max_members": max_members,
        "max_header_bytes": max_header_bytes,
        "max_blob_bytes": max_blob_bytes,
        "max_total_bytes": max_total_bytes,
    }
    flags = {"base_name": "--base-name"}
    flags |= {cap: "--" + cap.replace("_", "-") for cap in caps}
    with settings.store() as store, flag_names(flags):
        from imageledger import LayoutLimits  # heavy: only for this command

        given = {cap: value for cap, value in caps.items() if value is not None}
        result = store.import_layout(
            layout,
            namespace=settings.namespace,
            actor=actor,
            reason=reason,
            base_name=base_name,
            check_blobs=not no_blob_check,
            limits=LayoutLimits(**given),
        )
    if settings.json:
        click.echo(
            document(
                {
                    "registered": [image_json(i) for i in result.registered],
                    "unchanged": [image_json(i) for i in result.unchanged],
                    "skipped": result.skipped,
                }
            )
        )
        return
    rows = [[i.name, i.target.digest, "registered"] for i in result.registered]
    rows += [[i.name, i.target.digest, "unchanged"] for i in result.unchanged]
    if rows:
        echo_lines(table(IMPORT_COLUMNS, rows))
    summary = (
        f"{len(result.registered)} registered, {len(result.unchanged)} unchanged, "
        f"{result.skipped} skipped (no name)"
    )
    if result.skipped and base_name is None:
        summary += "; --base-name names entries that have only a tag"
    click.echo(summary)


@click.command(name="export-layout")
@click.argument("layout", metavar="DIR")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@pass_settings
def export_layout(settings: Settings, layout: str, filters: tuple[str, ...]) -> None:
    """Write an OCI image layout of the images (those FILTER selects, as in list).

    DIR gets oci-layout, an empty blobs/ and index.json, whose entries are the
    images' descriptors with their names in the io.containerd.image.name and
    org.opencontainers.image.ref.name (the tag) annotations. No blobs: the
    layout is metadata only, as the store is; import-layout --no-blob-check
    reads it back. DIR must not exist (its parent must) or be empty: nothing
    is overwritten.

    \b
    Examples:
      imageledger export-layout ./snapshot
      imageledger -n prod export-layout /tmp/prod-images
    """
    with settings.store() as store:
        count = store.export_layout(layout, *filters, namespace=settings.namespace)
    if settings.json:
        click.echo(document({"path": layout, "images": count}))
    else:
        noun = "image" if count == 1 else "images"
        click.echo(
            f"exported {count} {noun} to {printable(layout)} "
            "(index.json only, no blobs)"
        )
