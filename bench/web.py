"""The auditors' timeline page of a name with a long history.

One name gets `events` events (every one a retarget among 50 targets, the
most intervals a history can have), then its timeline page is rendered
through the real application (`create_app`, in-process over ASGI: the
store, the SVG and the template, without a socket), first page and last.
The baseline is the library call the page is built from, `history(name)`;
the target is a page in under a second.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import anyio

from bench.live_view import target
from bench.table import Row
from imageledger import ImageStore
from imageledger.serve import create_app

NAME = "registry.example/team/busy:latest"
TARGETS = 50


def run(folder: Path, events: int = 10_000, runs: int = 11) -> list[Row]:
    with ImageStore.open(folder / "web.db") as store:
        for start in range(0, events, 5_000):
            store.register_many(
                (NAME, target(i % TARGETS))
                for i in range(start, min(events, start + 5_000))
            )
        app = create_app(store)
        path = f"/ui/namespaces/default/history/{NAME}"
        pages = -(-events // 200)
        rows = []
        for query, which in (("", "first"), (f"page={pages}", "last")):
            page = _median(lambda q=query: _get(app, path, q), runs)
            history = _median(lambda: store.history(NAME), runs)
            rows.append(
                Row(
                    f"timeline page of a name with {events:,} events ({which} page)",
                    f"{page * 1000:,.0f} ms",
                    f"{history * 1000:,.0f} ms",
                    page / history,
                    "< 1 s",
                    page < 1.0,
                )
            )
        return rows


def _median(call: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _get(app: Any, path: str, query: str) -> bytes:
    """GET `path` from the ASGI `app`; the body (asserting a 200)."""
    status: list[int] = []
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    anyio.run(app, scope, receive, send)
    assert status == [200], (status, b"".join(body)[:500])
    return b"".join(body)
