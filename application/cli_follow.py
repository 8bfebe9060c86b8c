"""follow containerd: keep a ledger of a live containerd's image store.

grpc and protobuf (the containerd extra) are imported only when the command
runs, so the rest of the command line does not load them.
"""

from __future__ import annotations

import signal
import socket
from types import FrameType
from typing import TYPE_CHECKING

import click

from imageledger.cli_context import (
    Settings,
    json_line,
    pass_settings,
    printable,
)
from imageledger.errors import InvalidArgument

if TYPE_CHECKING:  # the command line starts without grpc, pydantic or the store
    from imageledger.follow import Change, Observer, Refusal, Status

MAX_RECONCILE_EVERY = 604_800  # a week: longer is a typo, and timeouts overflow


@click.group()
def follow() -> None:
    """Record what a live image store does, as it happens."""


@follow.command()
@click.option(
    "--address",
    default="/run/containerd/containerd.sock",
    show_default=True,
    metavar="SOCKET",
    help="containerd's gRPC socket.",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    metavar="NS",
    help="A containerd namespace to follow (repeatable). [default: all of them]",
)
@click.option(
    "--reconcile-every",
    type=float,
    default=300.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between reconciles with containerd's image list; 0: only "
    "at start and after a reconnect.",
)
@click.option(
    "--actor",
    metavar="NAME",
    help="Who the recorded changes are by. [default: containerd@HOSTNAME]",
)
@click.option(
    "--protos",
    metavar="DIR",
    envvar="IMAGELEDGER_CONTAINERD_PROTOS",
    help="Where containerd's API protos are (a Go source root). "
    "[default: $IMAGELEDGER_CONTAINERD_PROTOS, else /usr/share/gocode/src]",
)
@click.option("-v", "--verbose", is_flag=True, help="One line per recorded change.")
@pass_settings
def containerd(
    settings: Settings,
    address: str,
    namespaces: tuple[str, ...],
    reconcile_every: float,
    actor: str | None,
    protos: str | None,
    verbose: bool,
) -> None:
    """Follow a containerd: reconcile its images into the ledger, then record
    each image event as observed, until interrupted (Ctrl-C or SIGTERM, exit 0).

    containerd namespaces map one to one to ledger namespaces (the global
    --namespace does not apply). Names containerd accepts but imageledger
    refuses (such as uppercase paths) are counted, warned about once each on
    stderr, and listed in the status. Status goes to stderr, or as JSON lines
    on stdout with --json; -v adds a line per recorded change.

    \b
    Example:
      imageledger --db /var/lib/imageledger.db follow containerd \\
        --namespace k8s.io --reconcile-every 600 -v
    """
    from imageledger.domain.labels import validate_actor
    from imageledger.domain.names import validate_namespace
    from imageledger.follow import Follower
    from imageledger.infrastructure.containerd import load_api

    if not 0 <= reconcile_every <= MAX_RECONCILE_EVERY:  # also refuses nan
        raise InvalidArgument(
            "--reconcile-every",
            f"must be 0 to {MAX_RECONCILE_EVERY:,} seconds, not {reconcile_every}",
        )
    for namespace in namespaces:
        try:
            validate_namespace(namespace)
        except InvalidArgument as e:
            raise InvalidArgument("--namespace", e.rule) from e
    try:
        chosen_actor = validate_actor(
            f"containerd@{socket.gethostname()}" if actor is None else actor
        )
    except InvalidArgument as e:
        raise InvalidArgument("--actor", e.rule) from e
    api = load_api(protos)
    with settings.store() as store:
        follower = Follower(
            store,
            api,
            address,
            namespaces=namespaces,
            actor=chosen_actor,
            reconcile_every=reconcile_every or None,
            observer=_printer(settings.json, verbose),
        )

        def stop(signum: int, frame: FrameType | None) -> None:
            follower.stop()

        previous = {
            number: signal.signal(number, stop)
            for number in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            follower.run()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _printer(as_json: bool, verbose: bool) -> Observer:
    """Status on stderr for people, or JSON lines on stdout for scripts;
    warnings on stderr either way."""
    from imageledger.follow import Observer

    class Printer(Observer):
        def changed(self, change: Change) -> None:
            if not verbose:
                return
            if as_json:
                click.echo(json_line(_change_json(change)))
                return
            line = (
                f"{change.kind} {change.namespace} {change.name} "
                f"{change.digest or '-'} ({change.reason})"
            )
            click.echo(printable(line), err=True)

        def refused(self, refusal: Refusal) -> None:
            click.echo(
                printable(
                    f"Warning: containerd image {refusal.name!r} in namespace "
                    f"{refusal.namespace!r} not recorded: {refusal.problem}"
                ),
                err=True,
            )

        def status(self, status: Status, what: str) -> None:
            if as_json:
                click.echo(json_line({"status": what, **status.to_json()}))
                return
            if what == "unreachable":
                return  # problem() said it
            followed = ", ".join(status.namespaces) or "all namespaces"
            click.echo(
                printable(
                    f"{what}: containerd at {status.address!r} ({followed}): "
                    f"{status.registered} registered, {status.deleted} deleted, "
                    f"{status.events} events, {len(status.refused)} refused, "
                    f"{status.reconnects} reconnects"
                ),
                err=True,
            )

        def problem(self, message: str) -> None:
            click.echo(printable(f"Warning: {message}"), err=True)

    return Printer()


def _change_json(change: Change) -> dict[str, object]:
    return {
        "change": change.kind,
        "namespace": change.namespace,
        "name": change.name,
        "digest": change.digest,
        "reason": change.reason,
    }
