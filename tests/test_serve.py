"""`imageledger serve` over a real socket: uvicorn in a subprocess on a free
loopback port, on SQLite and PostgreSQL (the `location` fixture)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SCRIPT
from serving import READ, WRITE, Server, serving, write_tokens


@pytest.fixture
def server(location: str, tmp_path: Path) -> Iterator[Server]:
    """A server on the test's store with TOKENS (write: ci-bot, read: auditor)."""
    with serving(location, token_file=write_tokens(tmp_path / "tokens")) as running:
        yield running


def test_healthz_answers_ok_without_a_token(server: Server) -> None:
    reply = server.call("GET", "/healthz")
    assert (reply.status, reply.json()) == (200, {"status": "ok"})
    assert reply.headers["content-type"] == "application/json"


def test_serve_prints_the_url_it_listens_on(server: Server) -> None:
    assert server.output[-1] == f"Listening on http://127.0.0.1:{server.port}"
    assert server.port > 0


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_server_with_exit_0(location: str, how: int) -> None:
    with serving(location) as running:
        assert running.stop(signal.Signals(how)) == 0


def test_without_a_token_file_serve_refuses_a_non_loopback_address(
    db_path: Path,
) -> None:
    import subprocess

    result = subprocess.run(
        [str(SCRIPT), "--db", str(db_path), "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "Error: invalid --host: '0.0.0.0' is not a loopback address: give --token-file "
        "to serve beyond this machine\n"
    )
    assert not db_path.exists()


def test_missing_and_unknown_tokens_are_401_and_read_tokens_cannot_write(
    server: Server,
) -> None:
    path = "/v1/namespaces/default/images/app:1"
    for token in (None, "nope"):
        reply = server.call("GET", path, token=token)
        assert reply.status == 401
        assert reply.json()["error"]["code"] == "unauthorized"
        assert reply.headers["www-authenticate"] == "Bearer"
    reply = server.call("DELETE", path, token=READ)
    assert reply.status == 403
    assert reply.json() == {
        "error": {
            "code": "forbidden",
            "message": "the token of 'auditor' may only read",
        }
    }
    assert server.call("GET", path, token=WRITE).status == 404
