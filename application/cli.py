"""The imageledger command line: parses, calls ImageStore, renders. Nothing else.

Errors become one line on stderr and an exit code here, in `main`, and nowhere
else: 0 ok, 1 other error, 2 invalid argument or usage, 3 not found,
4 conflict, 5 verification failed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn

import click

from imageledger import __version__
from imageledger.cli_render import (
    GET_COLUMNS,
    HISTORY_COLUMNS,
    LIST_COLUMNS,
    document,
    entry_json,
    history_row,
    image_json,
    image_row,
    json_line,
    progress,
    table,
)
from imageledger.errors import (
    Conflict,
    ImageLedgerError,
    ImageNotFound,
    IntegrityError,
    InvalidArgument,
)

if TYPE_CHECKING:
    from imageledger.store import ImageStore

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_VERIFY = 5

_ACTOR_HELP = "Who makes the change. [default: $IMAGELEDGER_ACTOR, else the user]"
_ALIASES = {"inspect": "get", "ls": "list", "rm": "delete"}
_GLOBAL_OPTIONS = {"--db", "-n", "--namespace", "--json"}
_DESCRIPTOR_FLAGS = {
    "target.digest": "--digest",
    "target.mediaType": "--media-type",
    "target.size": "--size",
}


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


class _Commands(click.Group):
    """A group whose commands also answer to their ctr-style aliases."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, _ALIASES.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        names = {command: alias for alias, command in _ALIASES.items()}
        rows = []
        for name in self.list_commands(ctx):
            command = self.commands[name]
            label = f"{name} ({names[name]})" if name in names else name
            rows.append((label, command.get_short_help_str(limit=60)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="PATH",
    help="The store: an SQLite file. [default: $IMAGELEDGER_DB, else imageledger.db]",
)
@click.option(
    "-n",
    "--namespace",
    default="default",
    show_default=True,
    envvar="IMAGELEDGER_NAMESPACE",
    help="The namespace to work in (or $IMAGELEDGER_NAMESPACE).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.version_option(
    __version__, "--version", prog_name="imageledger", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, db: str | None, namespace: str, as_json: bool) -> None:
    """An event-sourced metadata store for container images.

    Maps image names to the OCI descriptor of their content, like containerd's
    image store, and keeps every change: who moved a name, when, and from what.

    \b
    Example:
      imageledger register app:prod --media-type \\
        application/vnd.oci.image.index.v1+json --size 1733 \\
        --digest sha256:9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f
      imageledger list
      imageledger history app:prod
    """
    ctx.obj = Settings(db=db, namespace=namespace, json=as_json)


pass_settings = click.make_pass_decorator(Settings)


@cli.command()
@click.argument("name")
@click.option("--digest", metavar="DIGEST", help="The target's digest (algorithm:hex).")
@click.option("--media-type", metavar="TYPE", help="The target's media type.")
@click.option("--size", metavar="BYTES", type=int, help="The target's size in bytes.")
@click.option(
    "--descriptor",
    metavar="FILE",
    help="Read the whole target descriptor as OCI JSON from FILE ('-' is stdin).",
)
@click.option("--label", "labels", metavar="KEY=VALUE", multiple=True, help="A label.")
@click.option(
    "--annotation",
    "annotations",
    metavar="KEY=VALUE",
    multiple=True,
    help="An annotation on the target descriptor (with --digest).",
)
@click.option("--actor", help=_ACTOR_HELP)
@click.option("--reason", help="Why, for the audit log.")
@click.option("--if-absent", is_flag=True, help="Only create: fail if the name exists.")
@click.option(
    "--if-version",
    metavar="N",
    type=click.IntRange(min=0),
    help="Only write if the name is at version N (compare-and-swap).",
)
@pass_settings
def register(
    settings: Settings,
    name: str,
    digest: str | None,
    media_type: str | None,
    size: int | None,
    descriptor: str | None,
    labels: tuple[str, ...],
    annotations: tuple[str, ...],
    actor: str | None,
    reason: str | None,
    if_absent: bool,
    if_version: int | None,
) -> None:
    """Point NAME at a descriptor.

    An upsert: registering the target and labels NAME already has writes
    nothing. Prints the name, its digest and the version this call left.

    \b
    Examples:
      imageledger register docker.io/library/alpine:3.20 \\
        --media-type application/vnd.oci.image.index.v1+json --size 9218 \\
        --digest sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d
      imageledger register app:1.0 --descriptor desc.json --label team=web --if-absent
      cat desc.json | imageledger register app:1.0 --descriptor -
    """
    target = _target(digest, media_type, size, descriptor, annotations)
    if if_absent and if_version is not None:
        raise click.UsageError("give --if-absent or --if-version, not both")
    expect: Literal["absent"] | int | None = "absent" if if_absent else if_version
    flags = _DESCRIPTOR_FLAGS if descriptor is None else {}
    with settings.store() as store, _flag_names(flags):
        image = store.register(
            name,
            target,
            _pairs("--label", labels),
            namespace=settings.namespace,
            actor=actor,
            reason=reason,
            expect=expect,
        )
    if settings.json:
        click.echo(document(image_json(image)))
    else:
        click.echo(f"{image.name}  {image.target.digest}  version {image.version}")


@cli.command()
@click.argument("name")
@pass_settings
def get(settings: Settings, name: str) -> None:
    """Show the image NAME points at now.

    \b
    Examples:
      imageledger get docker.io/library/alpine:3.20
      imageledger --json get app:prod | jq -r .target.digest
    """
    with settings.store() as store:
        image = store.get(name, namespace=settings.namespace)
    if settings.json:
        click.echo(document(image_json(image)))
    else:
        _echo_lines(table(GET_COLUMNS, [image_row(image, detailed=True)]))


@cli.command(name="list")
@click.argument("filters", nargs=-1, metavar="[FILTER]...")
@click.option("-q", "--quiet", is_flag=True, help="Print names only.")
@pass_settings
def list_images(settings: Settings, filters: tuple[str, ...], quiet: bool) -> None:
    """List the images of the namespace, sorted by name.

    \b
    Examples:
      imageledger list
      imageledger -n prod ls -q
      imageledger --json list > images.jsonl
    """
    with settings.store() as store:
        images = store.list(*filters, namespace=settings.namespace)
        if quiet:
            _echo_lines(image.name for image in images)
        elif settings.json:
            _echo_lines(json_line(image_json(image)) for image in images)
        else:
            _echo_lines(table(LIST_COLUMNS, (image_row(i) for i in images)))


@cli.command()
@click.argument("names", nargs=-1, required=True, metavar="NAME...")
@click.option(
    "--if-digest",
    metavar="DIGEST",
    help="Delete only while the name points at DIGEST.",
)
@click.option("--actor", help=_ACTOR_HELP)
@click.option("--reason", help="Why, for the audit log.")
@pass_settings
def delete(
    settings: Settings,
    names: tuple[str, ...],
    if_digest: str | None,
    actor: str | None,
    reason: str | None,
) -> None:
    """Delete one or more names (their history stays in the log).

    Every name is checked for syntax before anything is deleted. A name that does not
    exist is reported and the others are still deleted; the exit code is then 3.

    \b
    Examples:
      imageledger rm app:old app:older --reason "superseded by 2.0"
      imageledger delete app:prod --if-digest \\
        sha256:9c1e2d3f4a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f
    """
    from imageledger.domain.names import validate_name

    for name in names:
        validate_name(name)
    missing: ImageNotFound | None = None
    with settings.store() as store, _flag_names({"if_digest": "--if-digest"}):
        for name in names:
            try:
                store.delete(
                    name,
                    namespace=settings.namespace,
                    actor=actor,
                    reason=reason,
                    if_digest=if_digest,
                )
            except ImageNotFound as e:
                _error_line(str(e))
                missing = missing or e
                continue
            if settings.json:
                click.echo(json_line({"namespace": settings.namespace, "name": name}))
            else:
                click.echo(name)
    if missing is not None:
        raise _AlreadyReported(EXIT_NOT_FOUND)


@cli.command()
@click.argument("name")
@pass_settings
def history(settings: Settings, name: str) -> None:
    """Show every change to NAME, oldest first (who, when, what, why).

    \b
    Examples:
      imageledger history app:prod
      imageledger --json history app:prod | jq -r 'select(.actor=="ci") | .reason'
    """
    with settings.store() as store:
        entries = store.history(name, namespace=settings.namespace)
    if settings.json:
        _echo_lines(json_line(entry_json(entry)) for entry in entries)
    else:
        _echo_lines(table(HISTORY_COLUMNS, (history_row(e) for e in entries)))


@cli.command()
@pass_settings
def replay(settings: Settings) -> None:
    """Print the images folded from the raw log.

    Ignores every view; the output has the form of `list`, so the two can be
    compared.

    \b
    Example:
      diff <(imageledger list) <(imageledger replay) && echo "view matches the log"
    """
    with settings.store() as store, progress("replaying") as report:
        state = store.replay(progress=report)
    images = sorted(
        (image for (ns, _), image in state.items() if ns == settings.namespace),
        key=lambda image: image.name,
    )
    if settings.json:
        _echo_lines(json_line(image_json(image)) for image in images)
    else:
        _echo_lines(table(LIST_COLUMNS, (image_row(image) for image in images)))


@cli.command()
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


@cli.command()
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


@cli.command()
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
    with settings.store() as store, _flag_names({"checkpoint": "--checkpoint"}):
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
    views = ", ".join(report.views)
    click.echo(
        f"ok: {report.events:,} events, head {report.position}:{report.head}"
        f"{proved}; {views} matches the log"
    )


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: run the command line, exit with its documented code."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` and return the exit code."""
    try:
        result = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="imageledger",
            standalone_mode=False,
        )
    except _AlreadyReported as e:
        return e.code
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.ctx.get_help() if e.ctx else "", err=True)
        return EXIT_USAGE
    except click.UsageError as e:
        return _fail(_usage_message(e), EXIT_USAGE)
    except click.ClickException as e:
        return _fail(e.format_message(), e.exit_code)
    except click.Abort:
        return _fail("interrupted", 130)
    except ImageLedgerError as e:
        return _fail(str(e), _exit_code(e))
    except BrokenPipeError:
        # A reader such as `head` stopped early; that is not an error.
        sys.stderr.close()
        return 0
    return result if isinstance(result, int) else 0


class _AlreadyReported(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _usage_message(error: click.UsageError) -> str:
    command = error.ctx.command_path if error.ctx else "imageledger"
    if isinstance(error, click.NoSuchOption) and error.option_name in _GLOBAL_OPTIONS:
        option = error.option_name
        hint = f"{option} is a global option: put it before the command, as in "
        return f"{error.format_message()} ({hint}'imageledger {option} ... COMMAND')"
    return f"{error.format_message()} (see '{command} --help')"


def _exit_code(error: ImageLedgerError) -> int:
    if isinstance(error, InvalidArgument):
        return EXIT_USAGE
    if isinstance(error, ImageNotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, Conflict):
        return EXIT_CONFLICT
    if isinstance(error, IntegrityError):
        return EXIT_VERIFY
    return EXIT_ERROR


@contextmanager
def _flag_names(flags: dict[str, str]) -> Iterator[None]:
    """Name a bad argument by the option that gave it (--digest, not target.digest)."""
    try:
        yield
    except InvalidArgument as e:
        if e.field in flags:
            raise InvalidArgument(flags[e.field], e.rule) from e
        raise


def _fail(message: str, code: int) -> int:
    _error_line(message)
    return code


def _error_line(message: str) -> None:
    one_line = " ".join(message.split())
    click.echo(f"Error: {one_line}", err=True)


def _echo_lines(lines: Iterable[str]) -> None:
    for line in lines:
        click.echo(line)


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise InvalidArgument(option, f"expected KEY=VALUE, got {value!r}")
        if key in pairs:
            raise InvalidArgument(option, f"{key!r} is given twice")
        pairs[key] = text
    return pairs


def _target(
    digest: str | None,
    media_type: str | None,
    size: int | None,
    descriptor: str | None,
    annotations: tuple[str, ...],
) -> dict[str, Any]:
    parts = {"--digest": digest, "--media-type": media_type, "--size": size}
    if descriptor is not None:
        given = [flag for flag, value in parts.items() if value is not None]
        if given or annotations:
            extra = ", ".join([*given, *(["--annotation"] if annotations else [])])
            raise click.UsageError(f"--descriptor cannot be combined with {extra}")
        return _read_descriptor(descriptor)
    missing = [flag for flag, value in parts.items() if value is None]
    if missing:
        raise click.UsageError(
            f"missing {', '.join(missing)}: give --digest, --media-type and --size, "
            "or --descriptor FILE"
        )
    target: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
    if annotations:
        target["annotations"] = _pairs("--annotation", annotations)
    return target


def _read_descriptor(source: str) -> dict[str, Any]:
    from imageledger.domain.descriptor import MAX_DESCRIPTOR_BYTES

    where = "standard input" if source == "-" else repr(source)
    try:
        if source == "-":
            raw = sys.stdin.buffer.read(MAX_DESCRIPTOR_BYTES + 1)
        else:
            with open(source, "rb") as f:
                raw = f.read(MAX_DESCRIPTOR_BYTES + 1)
    except OSError as e:
        problem = f"cannot read {where}: {e.strerror}"
        raise InvalidArgument("--descriptor", problem) from e
    if len(raw) > MAX_DESCRIPTOR_BYTES:
        raise InvalidArgument(
            "--descriptor", f"{where} is over {MAX_DESCRIPTOR_BYTES} bytes"
        )
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise InvalidArgument("--descriptor", f"{where} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(
            "--descriptor",
            f"{where} is not JSON ({e.msg} at line {e.lineno}, " f"column {e.colno})",
        ) from None
    except (RecursionError, ValueError) as e:
        raise InvalidArgument("--descriptor", f"{where}: {e}") from None
    if not isinstance(data, dict):
        raise InvalidArgument(
            "--descriptor",
            f"{where} must hold a JSON object, not {type(data).__name__}",
        )
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {key!r} appears twice")
        data[key] = value
    return data
