"""`imageledger serve` over a real socket: uvicorn in a subprocess on a free
loopback port, on SQLite and PostgreSQL (the `location` fixture)."""

from __future__ import annotations

import json
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SCRIPT, digest
from imageledger import ImageStore
from serving import READ, WRITE, Server, image_path, serving, wait_for, write_tokens


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


# Images: register, get, list, delete, history.

NAME = "registry.example/team/app:1.0"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def target(n: int) -> dict[str, object]:
    return {"mediaType": MANIFEST, "digest": digest(n), "size": 1000 + n}


def test_put_registers_and_get_returns_the_image_with_its_version_as_etag(
    server: Server,
) -> None:
    reply = server.call(
        "PUT",
        image_path(NAME),
        body={"target": target(1), "labels": {"team": "web"}, "reason": "release"},
        token=WRITE,
    )
    assert reply.status == 200
    put = reply.json()
    assert (put["name"], put["target"], put["labels"], put["version"]) == (
        NAME,
        target(1),
        {"team": "web"},
        1,
    )
    assert reply.headers["etag"] == '"1"'
    got = server.call("GET", image_path(NAME), token=READ)
    assert (got.status, got.json(), got.headers["etag"]) == (200, put, '"1"')


def test_the_token_name_is_the_actor_of_every_write(server: Server) -> None:
    server.call("PUT", image_path(NAME), body={"target": target(1)}, token=WRITE)
    server.call("DELETE", image_path(NAME) + "?reason=gone", token=WRITE)
    entries = server.call(
        "GET", f"/v1/namespaces/default/history/{NAME}", token=READ
    ).json()["entries"]
    assert [(e["kind"], e["actor"], e["reason"]) for e in entries] == [
        ("registered", "ci-bot", None),
        ("deleted", "ci-bot", "gone"),
    ]


def test_a_body_cannot_claim_another_actor(server: Server) -> None:
    reply = server.call(
        "PUT",
        image_path(NAME),
        body={"target": target(1), "actor": "someone-else"},
        token=WRITE,
    )
    assert (reply.status, reply.json()["error"]) == (
        400,
        {"code": "invalid_argument", "message": "invalid body: unknown field 'actor'"},
    )


def test_without_a_token_file_the_actor_is_anonymous(location: str) -> None:
    with serving(location) as running:
        assert (
            running.call("PUT", image_path(NAME), body={"target": target(1)}).status
            == 200
        )
        entries = running.call("GET", f"/v1/namespaces/default/history/{NAME}").json()
    assert [e["actor"] for e in entries["entries"]] == ["anonymous"]


def test_if_none_match_creates_only_and_if_match_writes_only_at_that_version(
    server: Server,
) -> None:
    create = {"If-None-Match": "*"}
    assert (
        server.call(
            "PUT",
            image_path(NAME),
            body={"target": target(1)},
            token=WRITE,
            headers=create,
        ).status
        == 200
    )
    again = server.call(
        "PUT", image_path(NAME), body={"target": target(2)}, token=WRITE, headers=create
    )
    assert (again.status, again.json()["error"]["code"]) == (409, "conflict")
    assert again.json()["error"]["message"] == (
        f'image "{NAME}" already exists in namespace "default" (version 1)'
    )
    stale = server.call(
        "PUT",
        image_path(NAME),
        body={"target": target(2)},
        token=WRITE,
        headers={"If-Match": '"7"'},
    )
    assert stale.status == 409
    moved = server.call(
        "PUT",
        image_path(NAME),
        body={"target": target(2)},
        token=WRITE,
        headers={"If-Match": '"1"'},
    )
    assert (moved.status, moved.json()["version"]) == (200, 2)
    late = server.call(
        "DELETE", image_path(NAME), token=WRITE, headers={"If-Match": '"1"'}
    )
    assert late.status == 409
    assert server.call("GET", image_path(NAME), token=READ).json()["version"] == 2


def test_delete_answers_204_and_if_digest_deletes_only_that_target(
    server: Server,
) -> None:
    server.call("PUT", image_path(NAME), body={"target": target(1)}, token=WRITE)
    other = server.call(
        "DELETE", image_path(NAME) + f"?if_digest={digest(2)}", token=WRITE
    )
    assert (other.status, other.json()["error"]["code"]) == (404, "not_found")
    done = server.call(
        "DELETE", image_path(NAME) + f"?if_digest={digest(1)}", token=WRITE
    )
    assert (done.status, done.body) == (204, b"")
    gone = server.call("GET", image_path(NAME), token=READ)
    assert gone.json() == {
        "error": {
            "code": "not_found",
            "message": f'image "{NAME}" not found in namespace "default"',
        }
    }


def test_an_immutable_name_is_a_409_and_force_deletes_it(server: Server) -> None:
    body = {"target": target(1), "immutable": True}
    assert server.call("PUT", image_path(NAME), body=body, token=WRITE).status == 200
    moved = server.call(
        "PUT", image_path(NAME), body={"target": target(2)}, token=WRITE
    )
    assert (moved.status, moved.json()["error"]["code"]) == (409, "conflict")
    refused = server.call("DELETE", image_path(NAME), token=WRITE)
    assert refused.status == 409
    assert (
        server.call("DELETE", image_path(NAME) + "?force=true", token=WRITE).status
        == 204
    )


def test_list_applies_filters_and_repeated_filters_are_or(server: Server) -> None:
    for n, (name, team) in enumerate([("a:1", "web"), ("b:1", "db"), ("c:1", "ops")]):
        body = {"target": target(n), "labels": {"team": team}}
        assert (
            server.call("PUT", image_path(name), body=body, token=WRITE).status == 200
        )

    def names(query: str) -> list[str]:
        reply = server.call("GET", f"/v1/namespaces/default/images{query}", token=READ)
        assert reply.status == 200, reply.body
        return [image["name"] for image in reply.json()["images"]]

    assert names("") == ["a:1", "b:1", "c:1"]
    assert names("?filter=labels.team==web") == ["a:1"]
    assert names("?filter=labels.team==web&filter=name==c:1") == ["a:1", "c:1"]
    assert names("?filter=labels.team!=web,labels.team!=db") == ["c:1"]
    bad = server.call(
        "GET", "/v1/namespaces/default/images?filter=labels.team===", token=READ
    )
    assert (bad.status, bad.json()["error"]["code"]) == (400, "invalid_argument")
    assert names("").__len__() == 3


def test_names_with_slashes_and_percent_encoding_reach_the_same_image(
    server: Server,
) -> None:
    name = "docker.io/library/alpine@" + digest(5)
    assert (
        server.call(
            "PUT", image_path(name), body={"target": target(5)}, token=WRITE
        ).status
        == 200
    )
    encoded = "/v1/namespaces/default/images/docker.io%2Flibrary%2Falpine%40" + digest(
        5
    ).replace(":", "%3A")
    assert server.call("GET", encoded, token=READ).json()["name"] == name


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "code"),
    [
        (
            "PUT",
            "/v1/namespaces/default/images/app:1",
            b"{not json",
            {},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/default/images/app:1",
            {"labels": {}},
            {},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/default/images/app:1",
            ["a list"],
            {},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/default/images/app:1",
            {"target": {"mediaType": MANIFEST, "digest": "sha256:xyz", "size": 1}},
            {},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/default/images/UPPER:1",
            None,
            {},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/bad%20ns/images/app:1",
            None,
            {},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/default/images/app:1",
            None,
            {"If-Match": "seven"},
            400,
            "invalid_argument",
        ),
        (
            "PUT",
            "/v1/namespaces/default/images/app:1",
            None,
            {"If-Match": '"1"', "If-None-Match": "*"},
            400,
            "invalid_argument",
        ),
        (
            "DELETE",
            "/v1/namespaces/default/images/app:1?force=maybe",
            None,
            {},
            400,
            "invalid_argument",
        ),
        (
            "DELETE",
            "/v1/namespaces/default/images/app:1?if_digest=nope",
            None,
            {},
            400,
            "invalid_argument",
        ),
        ("DELETE", "/v1/namespaces/default/images/app:1", None, {}, 404, "not_found"),
        ("GET", "/v1/namespaces/default/history/app:1", None, {}, 404, "not_found"),
        ("GET", "/v1/log?after=-1", None, {}, 400, "invalid_argument"),
        ("GET", "/v1/log?kind=moved", None, {}, 400, "invalid_argument"),
        ("GET", "/v1/diff?a=0", None, {}, 400, "invalid_argument"),
        (
            "GET",
            "/v1/namespaces/default/as-of/yesterday/images",
            None,
            {},
            400,
            "invalid_argument",
        ),
        ("GET", "/v1/where/sha256:short", None, {}, 400, "invalid_argument"),
        ("POST", "/v1/verify?checkpoint=1:nothex", None, {}, 400, "invalid_argument"),
        ("GET", "/v1/events?after=x", None, {}, 400, "invalid_argument"),
        ("GET", "/v1/nothing-here", None, {}, 404, "not_found"),
        ("POST", "/healthz", None, {}, 405, "method_not_allowed"),
    ],
)
def test_bad_requests_are_answered_with_a_json_error_and_write_nothing(
    server: Server,
    method: str,
    path: str,
    body: object,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    if body is None and method == "PUT":
        body = {"target": target(1)}
    reply = server.call(method, path, body=body, token=WRITE, headers=headers)
    assert (reply.status, reply.json()["error"]["code"]) == (status, code), reply.body
    assert reply.headers["content-type"] == "application/json"
    assert server.call("GET", "/v1/checkpoint", token=READ).json()["position"] == 0


def test_a_body_over_the_cap_is_413_and_writes_nothing(
    location: str, tmp_path: Path
) -> None:
    with serving(location, "--max-body", "200") as running:
        big = {"target": target(1), "reason": "x" * 300}
        reply = running.call("PUT", image_path(NAME), body=big)
        assert reply.status == 413
        assert reply.json() == {
            "error": {
                "code": "too_large",
                "message": "the request body is larger than 200 bytes",
            }
        }
        # Without Content-Length (chunked), the cap holds as the body is read.
        connection = running.connection()
        connection.putrequest("PUT", image_path(NAME))
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        chunk = json.dumps(big).encode()
        connection.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
        assert connection.getresponse().status == 413
        connection.close()
        small = running.call("PUT", image_path(NAME), body={"target": target(1)})
        assert small.status == 200
        assert running.call("GET", "/v1/checkpoint").json()["position"] == 1


def test_a_busy_store_is_503_unavailable(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    ImageStore.open(db).close()
    with serving(str(db), env={"IMAGELEDGER_LOCK_TIMEOUT": "0.2"}) as running:
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            reply = running.call("PUT", image_path(NAME), body={"target": target(1)})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (reply.status, reply.json()["error"]["code"]) == (503, "unavailable")
        assert reply.json()["error"]["message"].startswith("database is busy")
        assert (
            running.call("PUT", image_path(NAME), body={"target": target(1)}).status
            == 200
        )


def test_a_damaged_view_is_a_500_integrity_error(location: str, run_sql: Any) -> None:
    with serving(location) as running:
        running.call("PUT", image_path(NAME), body={"target": target(1)})
        run_sql("DELETE FROM images")
        reply = running.call("POST", "/v1/verify")
        assert (reply.status, reply.json()["error"]["code"]) == (500, "integrity")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("write ci-bot\n", "line 1: expected 'SCOPE NAME TOKEN'"),
        (
            "# tokens\nadmin root s3cr3t-token\n",
            "line 2: the scope must be 'read' or 'write'",
        ),
        (
            "write ci-bot s3cr3t-token\nread auditor s3cr3t-token\n",
            "line 2: this token is given twice",
        ),
        ("# nothing but a comment\n\n", "holds no token"),
    ],
)
def test_a_bad_token_file_stops_serve_with_exit_2_and_never_shows_a_token(
    tmp_path: Path, content: str, message: str
) -> None:
    import subprocess

    tokens = tmp_path / "tokens"
    tokens.write_text(content)
    result = subprocess.run(
        [
            str(SCRIPT),
            "--db",
            str(tmp_path / "x.db"),
            "serve",
            "--token-file",
            str(tokens),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("Error: invalid --token-file: ")
    assert result.stderr.endswith(f"{message}\n")
    assert "s3cr3t" not in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_a_token_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    import subprocess

    real = write_tokens(tmp_path / "real-tokens")
    (tmp_path / "tokens").symlink_to(real)
    result = subprocess.run(
        [
            str(SCRIPT),
            "--db",
            str(tmp_path / "x.db"),
            "serve",
            "--token-file",
            str(tmp_path / "tokens"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot open" in result.stderr
    assert not (tmp_path / "x.db").exists()


def test_a_request_in_flight_when_the_server_is_stopped_finishes(
    location: str,
) -> None:
    with serving(location) as running:
        body = json.dumps({"target": target(1), "reason": "in flight"}).encode()
        connection = running.connection()
        connection.putrequest("PUT", image_path(NAME))
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        connection.send(body[:10])  # the request has begun, its body has not come
        running.process.send_signal(signal.SIGTERM)

        def refused() -> bool:  # the server stopped taking new connections
            try:
                running.call("GET", "/healthz", timeout=5)
            except ConnectionRefusedError:
                return True
            return False

        wait_for(refused, "the server to stop listening")
        connection.send(body[10:])
        reply = connection.getresponse()
        assert (reply.status, json.loads(reply.read())["version"]) == (200, 1)
        connection.close()
        assert running.stop() == 0
    with ImageStore.open(location) as store:
        assert [e.reason for e in store.history(NAME)] == ["in flight"]
