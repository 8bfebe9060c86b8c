"""The `serve` command: the HTTP service (application/serve.py) on uvicorn.

Starlette and uvicorn are imported inside the command, so the rest of the
command line starts without them (they come with `imageledger[serve]`).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from imageledger.cli_context import Settings, pass_settings
from imageledger.errors import InvalidArgument

# Long enough for a request in flight to finish; an event stream is ended at once.
GRACE_SECONDS = 10


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="The address to listen on; beyond loopback only with --token-file.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="The TCP port (0: any free port; the URL printed says which).",
)
@click.option(
    "--token-file",
    metavar="FILE",
    help="Bearer tokens, one 'SCOPE NAME TOKEN' a line (SCOPE: read or write).",
)
@click.option(
    "--max-body",
    metavar="BYTES",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    help="The largest request body accepted (413 beyond).",
)
@pass_settings
def serve(
    settings: Settings,
    host: str,
    port: int,
    token_file: str | None,
    max_body: int,
) -> None:
    """Serve the store over HTTP, and record a registry's notifications.

    Prints the URL it listens on, then serves until Ctrl-C or SIGTERM
    (requests in flight finish). Without --token-file every request is
    allowed, as actor 'anonymous', and only a loopback address is accepted.
    Needs `pip install 'imageledger[serve]'`. See docs/serve.md.

    \b
    Examples:
      imageledger serve --port 8080
      imageledger --db postgresql://ledger@db/ledger serve \\
        --host 0.0.0.0 --token-file /etc/imageledger/tokens
      curl -s http://127.0.0.1:8080/v1/namespaces/default/images
    """
    try:
        import uvicorn

        from imageledger.serve import create_app, is_loopback, load_tokens
    except ImportError as e:
        raise click.ClickException(
            f"serve needs the serve extra: pip install 'imageledger[serve]' ({e})"
        ) from e

    tokens = load_tokens(token_file) if token_file is not None else None
    if tokens is None and not is_loopback(host):
        raise InvalidArgument(
            "--host",
            f"{host!r} is not a loopback address: give --token-file to serve "
            "beyond this machine",
        )
    listening = _bind(host, port)
    closing = threading.Event()
    with settings.store() as store, listening:
        app = create_app(store, tokens=tokens, max_body=max_body, closing=closing)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACE_SECONDS,
            lifespan="off",
        )
        server = _server(config, closing)
        bound_host, bound_port = listening.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        click.echo(f"Listening on http://{shown}:{bound_port}", nl=True)
        sys.stdout.flush()
        server.run(sockets=[listening])


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise InvalidArgument("--host", f"cannot resolve {host!r}: {e}") from e
    family, kind, proto, _, address = infos[0]
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
        listening.listen(2048)
    except OSError as e:
        listening.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {e.strerror}"
        ) from e
    listening.set_inheritable(True)
    return listening


def _server(config: Any, closing: threading.Event) -> Any:
    """uvicorn's server, which also ends the event streams when asked to stop
    (`closing`), and returns normally after a signal instead of raising it
    again, so that Ctrl-C and SIGTERM exit 0."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            closing.set()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {
                each: signal.signal(each, self.handle_exit)
                for each in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                yield
            finally:
                for each, handler in previous.items():
                    signal.signal(each, handler)

    return Server(config)
