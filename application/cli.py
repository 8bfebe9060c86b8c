"""The imageledger command line: parses, calls ImageStore, renders. Nothing else.

The commands live in modules named after what they do: cli_images (register,
get, list, delete, history), cli_audit (log, as-of, where, diff, replay),
cli_integrity (checkpoint, verify, rebuild) and cli_transfer (export, import,
watch, import-layout, export-layout); cli_context holds what they share. A
command's module is imported only when that command runs (or when `--help`
lists them all), so each command starts with only what it uses.
Errors become one line on stderr and an exit code here, in `run`, and nowhere
else: 0 ok, 1 other error, 2 invalid argument or usage, 3 not found,
4 conflict, 5 verification failed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import import_module
from typing import NoReturn

import click

from imageledger import __version__
from imageledger.cli_context import (
    EXIT_CONFLICT,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    EXIT_VERIFY,
    AlreadyReported,
    Settings,
    error_line,
)
from imageledger.errors import (
    Conflict,
    ImageLedgerError,
    ImageNotFound,
    IntegrityError,
    InvalidArgument,
)

# Each command's home, imported when the command is used: "module:attribute".
_HOMES = {
    "register": "imageledger.cli_images:register",
    "get": "imageledger.cli_images:get",
    "list": "imageledger.cli_images:list_images",
    "delete": "imageledger.cli_images:delete",
    "history": "imageledger.cli_images:history",
    "log": "imageledger.cli_audit:log",
    "as-of": "imageledger.cli_audit:as_of",
    "where": "imageledger.cli_audit:where",
    "diff": "imageledger.cli_audit:diff",
    "replay": "imageledger.cli_audit:replay",
    "rebuild": "imageledger.cli_integrity:rebuild",
    "checkpoint": "imageledger.cli_integrity:checkpoint",
    "verify": "imageledger.cli_integrity:verify",
    "export": "imageledger.cli_transfer:export",
    "import": "imageledger.cli_transfer:import_log",
    "watch": "imageledger.cli_transfer:watch",
    "import-layout": "imageledger.cli_transfer:import_layout",
    "export-layout": "imageledger.cli_transfer:export_layout",
    "serve": "imageledger.cli_serve:serve",
    "follow": "imageledger.cli_follow:follow",
}
_ALIASES = {"inspect": "get", "ls": "list", "rm": "delete"}
_GLOBAL_OPTIONS = {"--db", "-n", "--namespace", "--json"}


class _Commands(click.Group):
    """A group whose commands are imported on first use (see `_HOMES`), and
    also answer to their ctr-style aliases. Commands added with `add_command`
    join them as usual."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *_HOMES})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = _ALIASES.get(cmd_name, cmd_name)
        if name not in self.commands and name in _HOMES:
            module, _, attribute = _HOMES[name].partition(":")
            command = getattr(import_module(module), attribute)
            assert isinstance(command, click.Command) and command.name == name
            self.commands[name] = command
        return super().get_command(ctx, name)

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
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            label = f"{name} ({names[name]})" if name in names else name
            rows.append((label, command.get_short_help_str(limit=60)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    metavar="PATH|URL",
    help="The store: an SQLite file, or a postgresql:// URL. "
    "[default: $IMAGELEDGER_DB, else imageledger.db]",
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
    except AlreadyReported as e:
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


def _fail(message: str, code: int) -> int:
    error_line(message)
    return code
