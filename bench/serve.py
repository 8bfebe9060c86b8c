"""`imageledger serve` against in-process calls on the same kind of store.

Notifications: registry events recorded per second through
POST /v1/notifications/distribution, in envelopes of 1 and of 50 events,
against `register_many` of the same items, 1 and 50 to a call. Reads: GET of
an image per second (one client, a kept-alive connection) against
`ImageStore.get`. The server is the real command in a child process on a
loopback port, on a fresh SQLite file; the in-process store is another fresh
file with the same durability.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.table import Row
from imageledger import ImageStore

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HOST = "registry.bench:5000"
SCRIPT = Path(sys.executable).with_name("imageledger")


def run(count: int) -> list[Row]:
    """Rows for `count` events in each case (a multiple of 50 is used)."""
    count = max(50, count // 50 * 50)
    with tempfile.TemporaryDirectory(prefix="imageledger-bench-serve-") as folder:
        root = Path(folder)
        server = _start(root / "served.db")
        address = server[1]
        try:
            with ImageStore.open(root / "local.db") as store:
                rows = [_notifications(address, store, count, size) for size in (1, 50)]
                rows.append(_gets(address, store, count))
        finally:
            server[0].terminate()
            server[0].wait(60)
    return rows


def _start(path: Path) -> tuple[subprocess.Popen[bytes], tuple[str, int]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    process = subprocess.Popen(
        [str(SCRIPT), "--db", str(path), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("Listening on http://"):
        process.kill()
        raise RuntimeError(f"imageledger serve did not start: {line!r}")
    host, _, port = line.removeprefix("Listening on http://").rpartition(":")
    return process, (host, int(port))


def _event(tag: str, n: int) -> dict[str, Any]:
    digest = f"sha256:{n:064x}"
    return {
        "id": str(uuid.uuid4()),
        "action": "push",
        "target": {
            "mediaType": MANIFEST,
            "digest": digest,
            "size": 1000 + n,
            "repository": "bench/app",
            "url": f"http://{HOST}/v2/bench/app/manifests/{digest}",
            "tag": tag,
        },
        "request": {"id": "r", "host": HOST, "useragent": "bench"},
        "actor": {"name": "bench"},
    }


def _request(
    connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None
) -> bytes:
    connection.request(method, path, body=body)
    reply = connection.getresponse()
    data = reply.read()
    if reply.status != 200:
        raise RuntimeError(f"{method} {path}: {reply.status} {data[:200]!r}")
    return data


def _notifications(
    address: tuple[str, int], store: ImageStore, count: int, size: int
) -> Row:
    prefix = f"s{size}"
    events = [_event(f"{prefix}-{n}", n) for n in range(count)]
    envelopes = [
        json.dumps({"events": events[i : i + size]}).encode()
        for i in range(0, count, size)
    ]
    # A connection per phase: the server closes one idle for a few seconds.
    connection = http.client.HTTPConnection(*address, timeout=120)
    started = time.perf_counter()
    for envelope in envelopes:
        _request(connection, "POST", "/v1/notifications/distribution", envelope)
    served = count / (time.perf_counter() - started)
    connection.close()
    items = [
        (f"{HOST}/bench/app:{prefix}-{n}", events[n]["target"]) for n in range(count)
    ]
    batches = [items[i : i + size] for i in range(0, count, size)]
    started = time.perf_counter()
    for batch in batches:
        store.register_many(
            [
                {
                    "name": name,
                    "target": {
                        "mediaType": target["mediaType"],
                        "digest": target["digest"],
                        "size": target["size"],
                    },
                }
                for name, target in batch
            ],
            actor="bench",
        )
    local = count / (time.perf_counter() - started)
    return _row(f"serve: notification events, envelopes of {size}", served, local)


def _gets(address: tuple[str, int], store: ImageStore, count: int) -> Row:
    names = [f"{HOST}/bench/app:s1-{n}" for n in range(count)]
    connection = http.client.HTTPConnection(*address, timeout=120)
    started = time.perf_counter()
    for name in names:
        _request(connection, "GET", f"/v1/namespaces/default/images/{name}", None)
    served = count / (time.perf_counter() - started)
    connection.close()
    started = time.perf_counter()
    for name in names:
        store.get(name)
    local = count / (time.perf_counter() - started)
    return _row("serve: GET image", served, local)


def _row(case: str, served: float, local: float) -> Row:
    return Row(
        case, f"{served:,.0f}/s", f"{local:,.0f}/s", served / local, "report", None
    )
