"""Concurrent clients of one real `imageledger serve`: 8 clients each make
200 conditional writes (If-Match, or If-None-Match for a new name) on a few
shared names. Every write answered 200 is in the history exactly once, at the
version it was answered with; every other answer is a 409."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from conftest import digest
from serving import Server, image_path, serving

CLIENTS = 8
WRITES = 200
NAMES = ["shared/a:1", "shared/b:1", "shared/c:1"]
MANIFEST = "application/vnd.oci.image.manifest.v1+json"

pytestmark = pytest.mark.slow


def client(server: Server, number: int, answers: list[tuple[int, str, Any]]) -> None:
    for i in range(WRITES):
        name = NAMES[(number + i) % len(NAMES)]
        current = server.call("GET", image_path(name))
        if current.status == 404:
            condition = {"If-None-Match": "*"}
        else:
            condition = {"If-Match": current.headers["etag"]}
        reason = f"client {number} write {i}"
        body = {
            "target": {
                "mediaType": MANIFEST,
                "digest": digest(number * WRITES + i + 1),
                "size": 1,
            },
            "reason": reason,
        }
        reply = server.call("PUT", image_path(name), body=body, headers=condition)
        answers.append((reply.status, reason, reply.json()))


def test_concurrent_conditional_writes_lose_nothing_acknowledged(location: str) -> None:
    answers: list[tuple[int, str, Any]] = []
    with serving(location) as server:
        threads = [
            threading.Thread(target=client, args=(server, n, answers))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        histories = {
            name: server.call("GET", f"/v1/namespaces/default/history/{name}").json()
            for name in NAMES
        }
    assert len(answers) == CLIENTS * WRITES
    statuses = Counter(status for status, _, _ in answers)
    assert set(statuses) <= {200, 409}, statuses
    assert all(
        body["error"]["code"] == "conflict"
        for status, _, body in answers
        if status == 409
    )
    recorded = Counter(
        (entry["name"], entry["reason"], entry["version"])
        for history in histories.values()
        for entry in history["entries"]
    )
    acknowledged = Counter(
        (body["name"], reason, body["version"])
        for status, reason, body in answers
        if status == 200
    )
    # Each acknowledged write once, at its version; nothing else was written.
    assert recorded == acknowledged
    assert statuses[200] >= len(NAMES)
