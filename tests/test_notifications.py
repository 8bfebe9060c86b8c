"""Distribution notification envelopes POSTed to a real `imageledger serve`:
what each event records, each event id once (resends, restarts, two servers
on one store), and which failures the registry is asked to resend."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import digest
from imageledger import ImageStore
from serving import READ, WRITE, Server, serving, write_tokens

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
HOST = "registry.test:5000"
PATH = "/v1/notifications/distribution"


def event(
    action: str,
    repository: str = "team/app",
    *,
    tag: str | None = "1.0",
    n: int | None = 1,
    kind: str = "manifests",
    actor: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One event as registry 2.8 sends it."""
    target: dict[str, Any] = {"repository": repository}
    if n is not None:
        reference = digest(n)
        target |= {
            "mediaType": MANIFEST
            if kind == "manifests"
            else "application/octet-stream",
            "digest": reference,
            "size": 500 + n,
            "length": 500 + n,
            "url": f"http://{HOST}/v2/{repository}/{kind}/{reference}",
        }
    if tag is not None:
        target["tag"] = tag
    return {
        "id": event_id or str(uuid.uuid4()),
        "timestamp": "2026-12-06T10:00:00Z",
        "action": action,
        "target": target,
        "request": {
            "id": "req-1",
            "addr": "127.0.0.1:40000",
            "host": HOST,
            "method": "PUT",
            "useragent": "skopeo/1.9",
        },
        "actor": {"name": actor} if actor else {},
        "source": {"addr": "registry:5000", "instanceID": "i-1"},
    }


@pytest.fixture
def server(location: str, tmp_path: Path) -> Iterator[Server]:
    with serving(location, token_file=write_tokens(tmp_path / "tokens")) as running:
        yield running


def post(server: Server, *events: dict[str, Any], query: str = "") -> Any:
    reply = server.call(
        "POST", PATH + query, body={"events": list(events)}, token=WRITE
    )
    assert reply.status == 200, reply.body
    return reply.json()


def history(server: Server, name: str) -> list[dict[str, Any]]:
    reply = server.call("GET", f"/v1/namespaces/default/history/{name}", token=READ)
    return reply.json()["entries"] if reply.status == 200 else []


def counts(report: dict[str, Any]) -> tuple[int, int, int, int]:
    return (
        report["recorded"],
        report["unchanged"],
        report["duplicates"],
        report["ignored"],
    )


def test_a_tag_push_registers_host_repository_tag_at_the_pushed_descriptor(
    server: Server,
) -> None:
    pushed = event("push", actor="alice")
    assert counts(post(server, pushed)) == (1, 0, 0, 0)
    [entry] = history(server, f"{HOST}/team/app:1.0")
    assert entry["target"] == {"mediaType": MANIFEST, "digest": digest(1), "size": 501}
    assert entry["actor"] == "alice"
    assert entry["reason"] == (
        f"distribution event {pushed['id']}: manifest push "
        "(request req-1, user agent skopeo/1.9)"
    )


def test_a_user_agent_a_reason_cannot_hold_is_cleaned_not_fatal(
    server: Server,
) -> None:
    pushed = event("push")
    pushed["request"]["useragent"] = "evil\x00agent " + "x" * 300
    assert counts(post(server, pushed)) == (1, 0, 0, 0)
    [entry] = history(server, f"{HOST}/team/app:1.0")
    assert entry["reason"] == (
        f"distribution event {pushed['id']}: manifest push "
        f"(request req-1, user agent evil?agent {'x' * 245}...)"
    )


def test_without_an_actor_the_token_name_records_and_registry_renames_the_host(
    server: Server,
) -> None:
    post(server, event("push"), query="?registry=mirror.example&namespace=mirrors")
    reply = server.call(
        "GET", "/v1/namespaces/mirrors/images/mirror.example/team/app:1.0", token=READ
    )
    assert reply.status == 200
    entries = server.call(
        "GET", "/v1/namespaces/mirrors/history/mirror.example/team/app:1.0", token=READ
    ).json()["entries"]
    assert [e["actor"] for e in entries] == ["ci-bot"]


def test_a_resent_envelope_records_nothing_twice(server: Server) -> None:
    envelope = [event("push", n=1), event("push", n=2), event("push", tag="2.0", n=2)]
    assert counts(post(server, *envelope)) == (3, 0, 0, 0)
    assert counts(post(server, *envelope)) == (0, 0, 3, 0)
    assert [e["target"]["digest"] for e in history(server, f"{HOST}/team/app:1.0")] == [
        digest(1),
        digest(2),
    ]


def test_a_push_of_the_content_a_tag_has_writes_nothing_and_keeps_its_labels(
    server: Server,
) -> None:
    post(server, event("push"))
    name = f"{HOST}/team/app:1.0"
    labelled = server.call(
        "PUT",
        f"/v1/namespaces/default/images/{name}",
        body={
            "target": {"mediaType": MANIFEST, "digest": digest(1), "size": 501},
            "labels": {"team": "web"},
        },
        token=WRITE,
    )
    assert labelled.json()["version"] == 2
    assert counts(post(server, event("push"))) == (0, 1, 0, 0)
    assert counts(post(server, event("push", n=3))) == (1, 0, 0, 0)
    image = server.call("GET", f"/v1/namespaces/default/images/{name}", token=READ)
    assert (image.json()["version"], image.json()["labels"]) == (3, {"team": "web"})


def test_blobs_pulls_and_pushes_by_digest_are_ignored_and_counted(
    server: Server,
) -> None:
    report = post(
        server,
        event("push", kind="blobs", tag=None),
        event("pull"),
        event("mount", kind="blobs", tag=None),
        event("push", tag=None),
        event("push"),
    )
    assert counts(report) == (1, 0, 0, 4)
    assert server.call("GET", "/v1/checkpoint", token=READ).json()["position"] == 1


def test_a_manifest_delete_deletes_every_tag_at_that_digest_and_the_tag_deletes_after_it_are_ignored(
    server: Server,
) -> None:
    post(
        server,
        event("push", tag="1.0", n=1),
        event("push", tag="latest", n=1),
        event("push", tag="2.0", n=2),
        event("push", "other/repo", tag="1.0", n=1),
    )
    report = post(
        server,
        event("delete", tag=None, n=1),
        event("delete", tag="1.0", n=None),
        event("delete", tag="latest", n=None),
    )
    assert counts(report) == (1, 0, 0, 2)
    images = server.call("GET", "/v1/namespaces/default/images", token=READ).json()
    assert [i["name"] for i in images["images"]] == [
        f"{HOST}/other/repo:1.0",
        f"{HOST}/team/app:2.0",
    ]
    assert [e["kind"] for e in history(server, f"{HOST}/team/app:latest")] == [
        "registered",
        "deleted",
    ]


def test_a_tag_delete_deletes_that_tag(server: Server) -> None:
    post(server, event("push", tag="1.0"), event("push", tag="1.1"))
    assert counts(post(server, event("delete", tag="1.0", n=None))) == (1, 0, 0, 0)
    images = server.call("GET", "/v1/namespaces/default/images", token=READ).json()
    assert [i["name"] for i in images["images"]] == [f"{HOST}/team/app:1.1"]


def test_a_bad_event_is_listed_and_does_not_lose_the_others(server: Server) -> None:
    bad_name = event("push", "Team/UPPER")
    bad_shape = {"id": "e-2", "action": "push"}
    report = post(
        server,
        event("push", tag="1.0"),
        bad_name,
        bad_shape,
        "junk",
        event("push", tag="2.0"),
    )
    assert counts(report) == (2, 0, 0, 0)
    assert [(r["index"], r["id"], r["error"]["code"]) for r in report["rejected"]] == [
        (1, bad_name["id"], "invalid_argument"),
        (2, "e-2", "invalid_argument"),
        (3, None, "invalid_argument"),
    ]
    assert server.call("GET", "/v1/checkpoint", token=READ).json()["position"] == 2


def test_an_event_against_an_immutable_name_is_rejected_not_retried(
    server: Server,
) -> None:
    name = f"{HOST}/team/app:1.0"
    server.call(
        "PUT",
        f"/v1/namespaces/default/images/{name}",
        body={
            "target": {"mediaType": MANIFEST, "digest": digest(1), "size": 501},
            "immutable": True,
        },
        token=WRITE,
    )
    report = post(server, event("push", n=2))
    assert [r["error"]["code"] for r in report["rejected"]] == ["conflict"]
    assert counts(report) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("body", "token", "status", "code"),
    [
        ({"events": [event("push")]}, READ, 403, "forbidden"),
        ({"events": [event("push")]}, None, 401, "unauthorized"),
        ({"events": "nope"}, WRITE, 400, "invalid_argument"),
        ([event("push")], WRITE, 400, "invalid_argument"),
        (b"not json", WRITE, 400, "invalid_argument"),
    ],
)
def test_envelopes_that_are_not_allowed_or_not_envelopes_are_refused(
    server: Server, body: Any, token: str | None, status: int, code: str
) -> None:
    reply = server.call("POST", PATH, body=body, token=token)
    assert (reply.status, reply.json()["error"]["code"]) == (status, code)
    assert server.call("GET", "/v1/checkpoint", token=READ).json()["position"] == 0


def test_a_busy_store_fails_the_envelope_and_the_resend_records_the_rest(
    tmp_path: Path,
) -> None:
    db = tmp_path / "busy.db"
    ImageStore.open(db).close()
    first, second = event("push", tag="1.0"), event("push", tag="2.0")
    with serving(str(db), env={"IMAGELEDGER_LOCK_TIMEOUT": "0.2"}) as running:
        assert counts(post(running, first)) == (1, 0, 0, 0)
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            reply = running.call("POST", PATH, body={"events": [first, second]})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (reply.status, reply.json()["error"]["code"]) == (503, "unavailable")
        assert counts(post(running, first, second)) == (1, 0, 1, 0)


def test_event_ids_are_remembered_across_restarts(location: str) -> None:
    envelope = [event("push", n=1), event("delete", tag=None, n=1)]
    with serving(location) as running:
        assert counts(post(running, *envelope)) == (2, 0, 0, 0)
    with serving(location) as running:
        # The push is found in the name's history; the manifest delete finds
        # no name left at its digest: nothing to do either way.
        assert counts(post(running, *envelope)) == (0, 0, 1, 1)
        assert [e["kind"] for e in history(running, f"{HOST}/team/app:1.0")] == [
            "registered",
            "deleted",
        ]


def test_two_servers_on_one_store_record_a_resent_event_once(location: str) -> None:
    pushes = [event("push", tag="1.0", n=n) for n in range(1, 21)]
    with serving(location) as one, serving(location) as two:
        reports: list[Any] = []

        def send(server: Server) -> None:
            for pushed in pushes:  # each event sent to both, as a resend would be
                reports.append(post(server, pushed))

        threads = [
            threading.Thread(target=send, args=(s,)) for s in (one, two, one, two)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        entries = history(one, f"{HOST}/team/app:1.0")
    assert sorted(e["target"]["digest"] for e in entries) == sorted(
        digest(n) for n in range(1, 21)
    )
    assert sum(r["recorded"] for r in reports) == 20
    assert sum(r["duplicates"] + r["unchanged"] for r in reports) == 60
