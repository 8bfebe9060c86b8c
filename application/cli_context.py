"""What every command shares: the global options, and small parsing helpers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from imageledger.errors import InvalidArgument

if TYPE_CHECKING:
    from imageledger.store import ImageStore

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_VERIFY = 5

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
    one_line = " ".join(message.split())
    click.echo(f"Error: {one_line}", err=True)


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
