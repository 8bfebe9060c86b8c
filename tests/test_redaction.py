"""No part of a PostgreSQL password reaches a message, however the URL is
written: not the library's exception, not what caused it, not a log record,
not the command line's stderr."""

from __future__ import annotations

import logging
import os
import socket
import subprocess

import pytest

from conftest import SCRIPT
from imageledger import ImageStore
from imageledger.errors import StoreError
from imageledger.infrastructure.redaction import redact_url, scrub


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PORT = closed_port()
# (url, the pieces of its password that must appear nowhere)
HOSTILE_URLS = [
    # The issue's three: a raw '/', '#' and '%' in the password.
    ("postgresql://ci:abc/def@db.example:5432/images", ["abc/def", "abc", "def@"]),
    ("postgresql://postgres:Sup3r#Secret@db.example:5432/images", ["Sup3r", "Secret"]),
    (
        "postgresql://postgres:50%offSecret@db.example:5432/images",
        ["50%of", "offSecret"],
    ),
    ("postgresql://ci:Qm?Zk9vX@db.example/images", ["Qm?Zk9vX", "Zk9vX"]),
    ("postgresql://ci:Ab@Cd9Zx@db.example/images", ["Ab@Cd9Zx", "Cd9Zx"]),
    ("postgresql://ci:N0Host!Zpw@/images", ["N0Host", "Zpw@"]),
    ("postgresql://ci:Sl4sh/Zed/more@127.0.0.1/images", ["Sl4sh", "Zed/more"]),
    ("postgres://ci:P%ZZwQx@127.0.0.1/images", ["P%ZZwQx", "ZZwQx"]),
    ("postgresql:/ci:OneSl4shPw@127.0.0.1/images", ["OneSl4shPw"]),
    ("postgresql://ci:Sp ace Pw9@127.0.0.1/images", ["Sp ace", "ace Pw9"]),
    # Well formed, but the server is not there: the driver's message is shown.
    (f"postgresql://ci:Enc0ded%2FPw9@127.0.0.1:{PORT}/images", ["Enc0ded", "Pw9"]),
    (f"postgresql://ci@127.0.0.1:{PORT}/images?password=Qu3ry%Secret", ["Qu3ry"]),
    (f"postgresql://ci@127.0.0.1:{PORT}/images?pass%77ord=Qu3ryTw0", ["Qu3ryTw0"]),
    (f"postgresql://ci:Pl4inPw9@127.0.0.1:{PORT}/images?sslmode=bogus", ["Pl4inPw9"]),
]


def chain(error: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


@pytest.mark.parametrize(("url", "pieces"), HOSTILE_URLS)
def test_opening_a_hostile_url_names_no_part_of_its_password(
    url: str, pieces: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreError) as caught:
        ImageStore.open(url)
    texts = [text for e in chain(caught.value) for text in (str(e), repr(e))]
    texts += [record.getMessage() for record in caplog.records]
    assert str(caught.value).startswith("cannot ")
    for piece in pieces:
        for text in texts:
            assert piece not in text, (piece, text)


@pytest.mark.parametrize(("url", "pieces"), HOSTILE_URLS)
def test_the_command_line_prints_no_part_of_a_hostile_urls_password(
    url: str, pieces: list[str]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    result = subprocess.run(
        [str(SCRIPT), "--db", url, "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: cannot ")
    assert result.stderr.count("\n") == 1
    for piece in pieces:
        assert piece not in result.stderr


def test_the_issues_urls_are_refused_with_the_user_information_hidden() -> None:
    with pytest.raises(StoreError) as caught:
        ImageStore.open("postgresql://ci:abc/def@db.example:5432/images")
    assert str(caught.value) == (
        "cannot open 'postgresql://***@db.example:5432/images': not a valid "
        "PostgreSQL URL (the user name or password has a character that must be "
        "percent-encoded: / as %2F, ? as %3F, # as %23, @ as %40, % as %25)"
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ci:pw@db/x", "postgresql://***@db/x"),
        ("postgresql://a:b/c@d#e@host:1/db?x=1", "postgresql://***@host:1/db?x=1"),
        (
            "postgresql://ci@db/x?password=a%b&sslmode=require",
            "postgresql://***@db/x?password=***&sslmode=require",
        ),
        ("postgresql://db/x?PASSWORD=pw", "postgresql://db/x?PASSWORD=***"),
        ("postgresql://db/x?pass%77ord=pw", "postgresql://db/x?pass%77ord=***"),
        ("mysql://root:pw@db/x", "mysql://***@db/x"),
        ("postgresql:/ci:pw@db/x", "postgresql:/***@db/x"),
        ("postgresql://db/x", "postgresql://db/x"),
        ("/tmp/images.db", "/tmp/images.db"),
    ],
)
def test_redact_url_hides_everything_up_to_the_last_at_and_the_password_parameter(
    url: str, shown: str
) -> None:
    assert redact_url(url) == shown


def test_scrub_hides_the_password_in_every_encoding_and_keeps_the_rest() -> None:
    url = "postgresql://ci:p%40ssw0rd@db/x"
    text = 'failed for "p@ssw0rd", "p%40ssw0rd", "ci:p%40ssw0rd" at db'
    assert scrub(text, url) == 'failed for "***", "***", "***" at db'
