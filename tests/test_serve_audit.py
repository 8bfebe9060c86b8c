"""The read-only endpoints of `imageledger serve` over a real socket: the log
as JSON lines, as-of, where, diff, checkpoint, verify, server-sent events and
the OpenAPI document; on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import digest
from imageledger import ImageStore
from serving import READ, WRITE, Server, image_path, serving, write_tokens

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def target(n: int) -> dict[str, Any]:
    return {"mediaType": MANIFEST, "digest": digest(n), "size": 1000 + n}


@pytest.fixture
def server(location: str, tmp_path: Path) -> Iterator[Server]:
    with serving(location, token_file=write_tokens(tmp_path / "tokens")) as running:
        yield running


def put(server: Server, name: str, n: int, namespace: str = "default") -> None:
    reply = server.call(
        "PUT", image_path(name, namespace), body={"target": target(n)}, token=WRITE
    )
    assert reply.status == 200, reply.body


def history_of_three(server: Server) -> None:
    put(server, "app:1", 1)  # position 1
    put(server, "app:1", 2)  # 2
    put(server, "db:1", 3, "other")  # 3
    assert server.call("DELETE", image_path("app:1"), token=WRITE).status == 204  # 4


def test_log_streams_json_lines_and_narrows_by_each_argument(server: Server) -> None:
    history_of_three(server)

    def positions(query: str) -> list[int]:
        reply = server.call("GET", f"/v1/log{query}", token=READ)
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line)["position"] for line in reply.body.splitlines()]

    assert positions("") == [1, 2, 3, 4]
    assert positions("?after=1") == [2, 3, 4]
    assert positions("?since=2&until=3") == [2, 3]
    assert positions("?kind=deleted") == [4]
    assert positions("?namespace=other") == [3]
    assert positions("?name=app:1&limit=2") == [1, 2]
    assert positions(f"?digest={digest(2)}") == [2]
    assert positions("?actor=ci-bot") == [1, 2, 3, 4]
    assert positions("?actor=nobody") == []
    first = json.loads(server.call("GET", "/v1/log?limit=1", token=READ).body)
    assert (first["name"], first["kind"], first["actor"], first["target"]) == (
        "app:1",
        "registered",
        "ci-bot",
        target(1),
    )


def test_log_streams_past_one_page(server: Server, location: str) -> None:
    items = [{"name": f"n{i}:1", "target": target(i)} for i in range(1200)]
    with ImageStore.open(location) as store:
        store.register_many(items)
    reply = server.call("GET", "/v1/log?after=100&limit=1050", token=READ)
    lines = reply.body.splitlines()
    assert len(lines) == 1050
    assert [json.loads(lines[i])["position"] for i in (0, -1)] == [101, 1150]


def test_as_of_where_and_diff_answer_what_the_library_answers(server: Server) -> None:
    history_of_three(server)
    past = server.call(
        "GET", "/v1/namespaces/default/as-of/1/images?filter=name==app:1", token=READ
    ).json()["images"]
    assert [(i["name"], i["target"]["digest"]) for i in past] == [("app:1", digest(1))]
    assert server.call(
        "GET", "/v1/namespaces/default/as-of/0/images", token=READ
    ).json() == {"images": []}
    where = server.call("GET", f"/v1/where/{digest(1)}", token=READ).json()
    assert [
        (i["name"], i["sincePosition"], i["untilPosition"]) for i in where["intervals"]
    ] == [("app:1", 1, 2)]
    other = server.call(
        "GET", f"/v1/where/{digest(3)}?namespace=default", token=READ
    ).json()
    assert other == {"intervals": []}
    diff = server.call("GET", "/v1/diff?a=1&b=3", token=READ).json()["changes"]
    assert [(c["change"], c["namespace"], c["name"]) for c in diff] == [
        ("retargeted", "default", "app:1"),
        ("added", "other", "db:1"),
    ]


def test_checkpoint_and_verify_prove_the_log(server: Server) -> None:
    history_of_three(server)
    point = server.call("GET", "/v1/checkpoint", token=READ).json()
    assert point["position"] == 4
    assert point["head"].startswith("sha256:")
    checkpoint = f"{point['position']}:{point['head']}"
    report = server.call(
        "POST", f"/v1/verify?checkpoint={checkpoint}", token=READ
    ).json()
    assert report == {
        "events": 4,
        "position": 4,
        "head": point["head"],
        "checkpoint": point,
        "views": ["current_view", "audit_index"],
    }
    wrong = "4:sha256:" + "0" * 64
    failed = server.call("POST", f"/v1/verify?checkpoint={wrong}", token=READ)
    assert (failed.status, failed.json()["error"]["code"]) == (500, "integrity")


def test_openapi_lists_every_endpoint(server: Server) -> None:
    document = server.call("GET", "/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    from imageledger.serve import ROUTES

    served = {
        (path.replace(":path", ""), method.lower()) for path, method, *_ in ROUTES
    }
    documented = {
        (path, method) for path, item in document["paths"].items() for method in item
    }
    assert documented == served


def read_event(response: http.client.HTTPResponse) -> dict[str, str]:
    """The next server-sent event's fields (comments skipped)."""
    fields: dict[str, str] = {}
    while True:
        line = response.readline().decode()
        if line == "":
            raise EOFError("the stream ended")
        line = line.rstrip("\n")
        if not line:
            if fields:
                return fields
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        fields[key] = value


def open_events(server: Server, query: str = "", token: str = READ) -> Any:
    connection = server.connection(timeout=60)
    connection.request(
        "GET", f"/v1/events{query}", headers={"Authorization": f"Bearer {token}"}
    )
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("content-type", "").startswith("text/event-stream")
    return connection, response


def test_events_stream_each_appended_event_as_it_comes(server: Server) -> None:
    put(server, "before:1", 1)  # before the stream: not sent without ?after
    connection, response = open_events(server)
    try:
        put(server, "app:1", 2)
        assert server.call("DELETE", image_path("app:1"), token=WRITE).status == 204
        first, second = read_event(response), read_event(response)
    finally:
        connection.close()
    assert (first["id"], first["event"]) == ("2", "registered")
    assert json.loads(first["data"])["target"] == target(2)
    assert (second["id"], second["event"], json.loads(second["data"])["name"]) == (
        "3",
        "deleted",
        "app:1",
    )


def test_events_resume_after_a_position_or_last_event_id(server: Server) -> None:
    history_of_three(server)
    connection, response = open_events(server, "?after=2")
    try:
        assert [read_event(response)["id"] for _ in range(2)] == ["3", "4"]
    finally:
        connection.close()
    connection = server.connection()
    connection.request(
        "GET",
        "/v1/events?namespace=default",
        headers={"Authorization": f"Bearer {READ}", "Last-Event-ID": "1"},
    )
    response = connection.getresponse()
    try:
        assert [read_event(response)["id"] for _ in range(2)] == ["2", "4"]
    finally:
        connection.close()


def test_a_closed_event_stream_does_not_hold_up_the_server(server: Server) -> None:
    for _ in range(3):
        connection, _response = open_events(server)
        connection.close()
    put(server, "app:1", 1)
    assert server.call("GET", image_path("app:1"), token=READ).status == 200


def test_stopping_the_server_ends_open_event_streams_cleanly(location: str) -> None:
    with serving(location) as running:
        connection = running.connection()
        connection.request("GET", "/v1/events")
        response = connection.getresponse()
        assert response.readline() == b": imageledger events\n"
        running.process.send_signal(signal.SIGINT)
        rest = response.read()  # the stream ends with its last chunk: no error
        connection.close()
        assert rest == b"\n"
        assert running.stop() == 0
