"""Run the real `imageledger serve` in a subprocess and talk to it over a socket.

    with serving(location, tokens=TOKENS) as server:
        reply = server.call("GET", "/v1/namespaces/default/images", token="r")
        assert reply.status == 200

The server listens on a free loopback port (`--port 0`; the URL it prints says
which) and is ready once /healthz answers 200. Leaving the block stops it with
SIGINT and waits for it to exit.
"""

from __future__ import annotations

import http.client
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

SCRIPT = Path(sys.executable).with_name("imageledger")
START_TIMEOUT = 60.0

# Tokens for servers started with `tokens=TOKENS`: token -> (scope, name).
TOKENS = {"w-token": ("write", "ci-bot"), "r-token": ("read", "auditor")}
WRITE = "w-token"
READ = "r-token"


@dataclass
class Reply:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A running `imageledger serve`."""

    url: str
    process: subprocess.Popen[bytes]
    output: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> Reply:
        """Make one request; `body` is sent as JSON unless it is bytes."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data: bytes | None
        if body is None or isinstance(body, bytes):
            data = body
        else:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        connection = self.connection(timeout)
        try:
            connection.request(method, path, body=data, headers=sent)
            answer = connection.getresponse()
            return Reply(
                answer.status,
                {k.lower(): v for k, v in answer.getheaders()},
                answer.read(),
            )
        finally:
            connection.close()

    def stop(self, how: signal.Signals = signal.SIGINT, timeout: float = 30) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(how)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def image_path(name: str, namespace: str = "default") -> str:
    """The URL path of an image (its name percent-encoded as a client would)."""
    return f"/v1/namespaces/{namespace}/images/{quote(name, safe='/:@')}"


def write_tokens(path: Path, tokens: Mapping[str, tuple[str, str]] = TOKENS) -> Path:
    path.write_text(
        "".join(f"{scope} {name} {token}\n" for token, (scope, name) in tokens.items())
    )
    return path


def start(
    location: str,
    *args: str,
    token_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Server:
    """Start `imageledger --db LOCATION serve --port 0 ARGS` and wait until
    /healthz answers 200; raise if it exits or takes longer than a minute."""
    command = [str(SCRIPT), "--db", location, "serve", "--port", "0", *args]
    if token_file is not None:
        command += ["--token-file", str(token_file)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**base, **(env or {})},
    )
    try:
        url, output = _printed_url(process)
        server = Server(url, process, output)
        _wait_healthy(server)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return server


@contextmanager
def serving(
    location: str,
    *args: str,
    token_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """A running server for the block; stopped (SIGINT) and waited for after it."""
    server = start(location, *args, token_file=token_file, env=env)
    try:
        yield server
    finally:
        server.stop()
        assert server.process.stdout is not None
        server.process.stdout.close()


def _printed_url(process: subprocess.Popen[bytes]) -> tuple[str, list[str]]:
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    buffered = b""
    lines: list[str] = []
    try:
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                if process.poll() is not None:
                    break
                continue
            chunk = os.read(process.stdout.fileno(), 4096)
            if not chunk:
                break
            buffered += chunk
            while b"\n" in buffered:
                line, buffered = buffered.split(b"\n", 1)
                lines.append(line.decode())
                if lines[-1].startswith("Listening on "):
                    return lines[-1].removeprefix("Listening on "), lines
    finally:
        selector.close()
    raise AssertionError(f"serve did not start: {[*lines, buffered.decode()]}")


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last: object = None
    while time.monotonic() < deadline:
        try:
            reply = server.call("GET", "/healthz", timeout=10)
        except OSError as e:
            last = e
        else:
            if reply.status == 200:
                return
            last = reply
        time.sleep(0.05)
    raise AssertionError(f"/healthz did not answer 200 within a minute: {last}")


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> Any:
    """Poll `condition()` until it returns something true; that value.
    Fails after `timeout` seconds (a deadline, not a measurement)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value!r}")
        time.sleep(0.05)
