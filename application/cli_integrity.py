"""The integrity commands: checkpoint, verify, and rebuild (the repair of views)."""

from __future__ import annotations

import click

from imageledger.cli_context import (
    Settings,
    document,
    flag_names,
    pass_settings,
    progress,
)


@click.command()
@pass_settings
def rebuild(settings: Settings) -> None:
    """Refold the views from the log.

    Readers and writers keep using the old views until the new ones are done.

    \b
    Example:
      imageledger rebuild
    """
    with settings.store() as store, progress("rebuilding") as report:
        events = store.rebuild(progress=report)
    if settings.json:
        click.echo(document({"events": events}))
    else:
        click.echo(f"rebuilt the views from {events:,} events")


@click.command()
@pass_settings
def checkpoint(settings: Settings) -> None:
    """Print the log's last position and the hash chain's head there.

    Keep the line somewhere else (a ticket, a signed tag, another machine):
    `verify --checkpoint` later proves nothing up to it was rewritten.

    \b
    Example:
      imageledger checkpoint >> ~/imageledger-checkpoints.txt
    """
    with settings.store() as store:
        point = store.checkpoint()
    if settings.json:
        click.echo(document({"position": point.position, "head": point.head}))
    else:
        click.echo(str(point))


@click.command()
@click.option(
    "--checkpoint",
    "given",
    metavar="POS:HEAD",
    help="Also prove the log still has HEAD at position POS.",
)
@pass_settings
def verify(settings: Settings, given: str | None) -> None:
    """Recompute the hash chain over the whole log and check every view.

    Exits 5 with one line naming the first bad log position and what is wrong
    there (payload changed, event missing, order changed, forged event, ...).

    \b
    Examples:
      imageledger verify
      imageledger verify --checkpoint "$(tail -1 ~/imageledger-checkpoints.txt)"
    """
    with settings.store() as store, flag_names({"checkpoint": "--checkpoint"}):
        report = store.verify(given)
    if settings.json:
        given_point = report.checkpoint
        click.echo(
            document(
                {
                    "events": report.events,
                    "position": report.position,
                    "head": report.head,
                    "checkpoint": None
                    if given_point is None
                    else {"position": given_point.position, "head": given_point.head},
                    "views": list(report.views),
                }
            )
        )
        return
    proved = f"; checkpoint {report.checkpoint} holds" if report.checkpoint else ""
    views = " and ".join(report.views)
    agree = "matches" if len(report.views) == 1 else "match"
    click.echo(
        f"ok: {report.events:,} events, head {report.position}:{report.head}"
        f"{proved}; {views} {agree} the log"
    )
