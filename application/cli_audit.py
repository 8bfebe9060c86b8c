"""The audit and time-travel commands: log, as-of, where, diff, replay.

Like every command they work in the `-n` namespace; `--all-namespaces` (`-A`)
widens log, where and diff to every namespace, adding a NAMESPACE column.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from imageledger.cli_context import (
    GET_COLUMNS,
    HISTORY_COLUMNS,
    LIST_COLUMNS,
    WHEN,
    Settings,
    document,
    echo_lines,
    entry_json,
    history_row,
    image_json,
    image_row,
    json_line,
    moment,
    pass_settings,
    precise_moment,
    progress,
    table,
)

if TYPE_CHECKING:
    from imageledger.projections.audit import AuditEntry
    from imageledger.projections.current_view import Image
    from imageledger.reads import StoredInterval
    from imageledger.time_travel import Diff, Interval

_OPERATORS = ("==", "!=", "~=")

all_namespaces = click.option(
    "-A",
    "--all-namespaces",
    "every",
    is_flag=True,
    help="Every namespace, not only the -n one.",
)


@click.command()
@click.option("--since", type=WHEN, help="From this point on (inclusive).")
@click.option("--until", type=WHEN, help="Up to this point (inclusive).")
@click.option(
    "--after", type=click.IntRange(min=0), metavar="POS", help="After this position."
)
@click.option("--actor", help="Only changes made by ACTOR.")
@click.option("--name", help="Only changes to NAME.")
@click.option("--digest", help="Only registrations at DIGEST.")
@click.option(
    "--kind", type=click.Choice(["registered", "deleted"]), help="Only this kind."
)
@click.option(
    "--limit", type=click.IntRange(min=0), metavar="N", help="At most N events."
)
@all_namespaces
@pass_settings
def log(
    settings: Settings,
    since: int | datetime | None,
    until: int | datetime | None,
    after: int | None,
    actor: str | None,
    name: str | None,
    digest: str | None,
    kind: str | None,
    limit: int | None,
    every: bool,
) -> None:
    """Show the changes of the whole log, oldest first, narrowed by the options.

    WHEN is a log position (an integer) or an RFC 3339 timestamp or date
    (a date means midnight UTC at its start; no offset means UTC).

    \b
    Examples:
      imageledger log --actor ci --since 2026-11-20
      imageledger log --digest sha256:9c1e...  # every registration at it
      imageledger log -A --kind deleted --limit 10
      imageledger --json log --after 1200   # what happened since position 1200
    """
    with settings.store() as store:
        entries = store.log(
            since=since,
            until=until,
            after=after,
            actor=actor,
            name=name,
            digest=digest,
            kind=kind,
            namespace=None if every else settings.namespace,
            limit=limit,
        )
        if settings.json:
            echo_lines(json_line(entry_json(entry)) for entry in entries)
            return
        columns: tuple[str, ...] = ("POSITION", "NAME", *HISTORY_COLUMNS[1:])
        if every:
            columns = ("NAMESPACE", *columns)
        echo_lines(table(columns, (_log_row(entry, every) for entry in entries)))


def _log_row(entry: AuditEntry, every: bool) -> list[str]:
    position, *rest = history_row(entry)
    row = [position, entry.name, *rest]
    return [entry.namespace, *row] if every else row


@click.command(name="as-of")
@click.argument("when", type=WHEN)
@click.argument("arguments", nargs=-1, metavar="[NAME | FILTER...]")
@pass_settings
def as_of(settings: Settings, when: int | datetime, arguments: tuple[str, ...]) -> None:
    """Show the images as they were at WHEN: one NAME as `get` shows it, or the
    images matching the FILTERs (all of them without) as `list` shows them.

    WHEN is a log position (an integer; 0 is the empty store) or an RFC 3339
    timestamp or date (a date means midnight UTC at its start). The state is
    the one right after every event at or before WHEN. An argument with an
    operator (==, !=, ~=) is a filter, else a NAME.

    \b
    Examples:
      imageledger as-of 2026-11-27T09:00:00Z
      imageledger as-of 2026-11-27T09:00:00Z app:prod
      imageledger as-of 1200 'labels.team==payments'
    """
    name, filters = _name_or_filters(arguments)
    with settings.store() as store:
        past = store.as_of(when)
        if name is not None:
            image = past.get(name, namespace=settings.namespace)
            if settings.json:
                click.echo(document(image_json(image)))
            else:
                echo_lines(table(GET_COLUMNS, [image_row(image, detailed=True)]))
            return
        images = past.list(*filters, namespace=settings.namespace)
        if settings.json:
            echo_lines(json_line(image_json(image)) for image in images)
        else:
            echo_lines(table(LIST_COLUMNS, (image_row(image) for image in images)))


def _name_or_filters(arguments: tuple[str, ...]) -> tuple[str | None, tuple[str, ...]]:
    if not arguments or any(op in arguments[0] for op in _OPERATORS):
        return None, arguments
    if len(arguments) > 1:
        raise click.UsageError("give one NAME, or FILTERs, not both")
    return arguments[0], ()


@click.command()
@click.argument("digest")
@all_namespaces
@pass_settings
def where(settings: Settings, digest: str, every: bool) -> None:
    """Show every name that points at DIGEST now or did before, and when.

    One row per interval: SINCE is when the name began to point at DIGEST,
    UNTIL when it stopped (a retag or a delete; `-` while it still does),
    POSITIONS the log positions of those two events, and IMMUTABLE whether the
    name was bound to DIGEST (write-once).

    \b
    Examples:
      imageledger where sha256:9c1e2d3f...   # is this (compromised) digest in use?
      imageledger --json where -A sha256:9c1e2d3f... | jq -r .name
    """
    namespace = None if every else settings.namespace
    intervals: Sequence[Interval | StoredInterval] = []
    with settings.reads() as reads:
        if reads is not None:  # all that `where` shows is in the index's rows
            intervals = reads.where(digest, namespace=namespace)
    if reads is None:
        with settings.store() as store:
            intervals = store.where(digest, namespace=namespace)
    if settings.json:
        echo_lines(json_line(interval_json(interval)) for interval in intervals)
        return
    columns: tuple[str, ...] = ("NAME", "SINCE", "UNTIL", "POSITIONS", "IMMUTABLE")
    rows = [_interval_row(interval) for interval in intervals]
    if every:
        columns = ("NAMESPACE", *columns)
        rows = [[i.namespace, *row] for i, row in zip(intervals, rows, strict=True)]
    echo_lines(table(columns, rows))


def _interval_row(interval: Interval | StoredInterval) -> list[str]:
    until = "-" if interval.until is None else moment(interval.until)
    end = "" if interval.until_position is None else str(interval.until_position)
    return [
        interval.name,
        moment(interval.since),
        until,
        f"{interval.since_position}..{end}",
        "yes" if interval.immutable else "no",
    ]


def interval_json(interval: Interval | StoredInterval) -> dict[str, Any]:
    """One interval of `where` as JSON."""
    return {
        "namespace": interval.namespace,
        "name": interval.name,
        "since": precise_moment(interval.since),
        "until": None if interval.until is None else precise_moment(interval.until),
        "sincePosition": interval.since_position,
        "untilPosition": interval.until_position,
        "immutable": interval.immutable,
    }


@click.command()
@click.argument("a", metavar="WHEN", type=WHEN)
@click.argument("b", metavar="WHEN", type=WHEN)
@all_namespaces
@pass_settings
def diff(settings: Settings, a: int | datetime, b: int | datetime, every: bool) -> None:
    """Show the names added, removed and retargeted between two points of the log.

    A change of labels only is not shown. Exits 0 whether or not anything
    changed.

    \b
    Examples:
      imageledger diff 2026-11-27 2026-11-28
      imageledger --json diff 1200 1300 | jq -r 'select(.change=="retargeted") | .name'
    """
    with settings.store() as store:
        changes = store.diff(a, b, namespace=None if every else settings.namespace)
    rows = diff_rows(changes)
    if settings.json:
        echo_lines(json_line(diff_json(row)) for row in rows)
        return
    columns: tuple[str, ...] = ("CHANGE", "NAME", "BEFORE", "AFTER")
    if every:
        columns = ("NAMESPACE", *columns)
    echo_lines(table(columns, (_diff_row(row, every) for row in rows)))


DiffRow = tuple[str, "Image | None", "Image | None"]


def diff_rows(changes: Diff) -> list[DiffRow]:
    """A diff's changes as (change, before, after), by namespace and name."""
    rows: list[DiffRow] = [
        *(("added", None, image) for image in changes.added),
        *(("removed", image, None) for image in changes.removed),
        *(("retargeted", before, after) for before, after in changes.retargeted),
    ]
    rows.sort(key=lambda row: (_named(row).namespace, _named(row).name))
    return rows


def diff_json(row: DiffRow) -> dict[str, Any]:
    """One change of a diff as JSON."""
    change, before, after = row
    return {
        "change": change,
        "namespace": _named(row).namespace,
        "name": _named(row).name,
        "before": None if before is None else image_json(before),
        "after": None if after is None else image_json(after),
    }


def _named(row: tuple[str, Image | None, Image | None]) -> Image:
    image = row[1] or row[2]
    assert image is not None  # every change has an image before or after it
    return image


def _diff_row(row: tuple[str, Image | None, Image | None], every: bool) -> list[str]:
    change, before, after = row
    image = _named(row)
    line = [
        change,
        image.name,
        "-" if before is None else before.target.digest,
        "-" if after is None else after.target.digest,
    ]
    return [image.namespace, *line] if every else line


@click.command()
@click.option(
    "--until", type=WHEN, help="Fold only the events at or before this point."
)
@pass_settings
def replay(settings: Settings, until: int | datetime | None) -> None:
    """Print the images folded from the raw log (up to WHEN with --until).

    Ignores every view; the output has the form of `list`, so the two can be
    compared (and `replay --until WHEN` with `as-of WHEN`). WHEN is a log
    position or an RFC 3339 timestamp or date.

    \b
    Examples:
      diff <(imageledger list) <(imageledger replay) && echo "view matches the log"
      imageledger replay --until 2026-11-27T09:00:00Z
    """
    with settings.store() as store, progress("replaying") as report:
        state = store.replay(until, progress=report)
    images = sorted(
        (image for (ns, _), image in state.items() if ns == settings.namespace),
        key=lambda image: image.name,
    )
    if settings.json:
        echo_lines(json_line(image_json(image)) for image in images)
    else:
        echo_lines(table(LIST_COLUMNS, (image_row(image) for image in images)))
