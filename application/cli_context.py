"""What every command shares: the global options, and small parsing helpers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from imageledger.cli_render import printable
from imageledger.errors import InvalidArgument

if TYPE_CHECKING:
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
