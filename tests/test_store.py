"""ImageStore on a real SQLite file: the seed scenario, conditions, history, rebuild."""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import descriptor, digest, sqlite_only
from imageledger import AuditEntry, Descriptor, Image, ImageStore
from imageledger.errors import Conflict, ImageNotFound, InvalidArgument, StoreError
from imageledger.infrastructure.sqlite import LedgerSQLiteConnectionPool

Rows = Callable[[], list[tuple[Any, ...]]]


def names(store: ImageStore, namespace: str = "default") -> list[str]:
    return [image.name for image in store.list(namespace=namespace)]


def test_the_seed_scenario(store: ImageStore) -> None:
    store.register("docker.io/library/alpine:3.20", descriptor(1), actor="ci")
    store.register("app:prod", descriptor(2), actor="ci")
    store.register("app:dev", descriptor(3), actor="ci")

    assert store.get("app:prod").target.digest == digest(2)
    assert names(store) == ["app:dev", "app:prod", "docker.io/library/alpine:3.20"]

    moved = store.register("app:prod", descriptor(3), actor="ci", reason="release")
    assert (moved.version, moved.target.digest) == (2, digest(3))
    assert store.get("app:prod").target.digest == digest(3)

    store.delete("app:prod", actor="ci")
    with pytest.raises(ImageNotFound, match='image "app:prod" not found'):
        store.get("app:prod")
    with pytest.raises(ImageNotFound):
        store.delete("app:prod", actor="ci")
    assert names(store) == ["app:dev", "docker.io/library/alpine:3.20"]

    again = store.register("app:prod", descriptor(4), actor="ci")
    assert again.version == 4  # the same stream continues after the delete
    assert store.get("app:prod") == again


def test_register_returns_the_image_as_written(store: ImageStore) -> None:
    image = store.register("app:1", descriptor(1), {"team": "a"}, actor="ci")
    assert isinstance(image, Image)
    assert (image.namespace, image.name, image.version) == ("default", "app:1", 1)
    assert image.target == Descriptor.from_oci(descriptor(1))
    assert image.labels == {"team": "a"}
    assert image.created_at == image.updated_at
    assert image.created_at.tzinfo is not None
    assert store.get("app:1") == image


def test_a_descriptor_object_is_accepted_as_target(store: ImageStore) -> None:
    target = Descriptor.from_oci(descriptor(5, annotations={"a": "b"}))
    assert store.register("app:1", target).target == target


def test_registering_the_same_target_and_labels_again_writes_nothing(
    store: ImageStore, log_rows: Rows
) -> None:
    first = store.register("app:1", descriptor(1), {"k": "v"})
    before = log_rows()
    again = store.register("app:1", descriptor(1), {"k": "v"})
    assert again == first
    assert log_rows() == before


def test_changing_only_the_labels_writes_an_event(store: ImageStore) -> None:
    store.register("app:1", descriptor(1), {"k": "v"})
    image = store.register("app:1", descriptor(1), {"k": "w"})
    assert (image.version, image.labels) == (2, {"k": "w"})
    assert store.get("app:1").created_at < image.updated_at


def test_expect_absent_creates_only_when_the_name_does_not_exist(
    store: ImageStore, log_rows: Rows
) -> None:
    store.register("app:1", descriptor(1), expect="absent")
    before = log_rows()
    with pytest.raises(Conflict, match='image "app:1" already exists .*version 1'):
        store.register("app:1", descriptor(2), expect="absent")
    assert log_rows() == before
    store.delete("app:1")
    assert store.register("app:1", descriptor(2), expect="absent").version == 3


def test_expect_version_is_compare_and_swap(store: ImageStore, log_rows: Rows) -> None:
    store.register("app:1", descriptor(1))
    store.register("app:1", descriptor(2), expect=1)
    before = log_rows()
    with pytest.raises(Conflict, match="is at version 2, not 1"):
        store.register("app:1", descriptor(3), expect=1)
    with pytest.raises(Conflict, match="is at version 0, not 1"):
        store.register("app:new", descriptor(3), expect=1)
    assert log_rows() == before
    assert store.register("app:new", descriptor(3), expect=0).version == 1


def test_delete_if_digest_deletes_only_at_that_digest(
    store: ImageStore, log_rows: Rows
) -> None:
    store.register("app:1", descriptor(1))
    before = log_rows()
    with pytest.raises(ImageNotFound, match=f"points at {digest(1)}, not {digest(2)}"):
        store.delete("app:1", if_digest=digest(2))
    assert log_rows() == before
    store.delete("app:1", if_digest=digest(1))
    with pytest.raises(ImageNotFound):
        store.get("app:1")


def test_delete_expect_version(store: ImageStore) -> None:
    store.register("app:1", descriptor(1))
    with pytest.raises(Conflict, match="is at version 1, not 5"):
        store.delete("app:1", expect=5)
    store.delete("app:1", expect=1)
    with pytest.raises(ImageNotFound):
        store.get("app:1")


def test_namespaces_are_separate(store: ImageStore) -> None:
    store.register("app:1", descriptor(1), namespace="team-a")
    store.register("app:1", descriptor(2), namespace="team-b")
    assert store.get("app:1", namespace="team-a").target.digest == digest(1)
    assert store.get("app:1", namespace="team-b").target.digest == digest(2)
    with pytest.raises(ImageNotFound, match='in namespace "default"'):
        store.get("app:1")
    assert names(store, "team-a") == ["app:1"] and names(store) == []


def test_list_streams_live_images_sorted_by_name(store: ImageStore) -> None:
    for name in ["b", "a/z", "a", "c:1", "a:2"]:
        store.register(name, descriptor(len(name)))
    store.delete("c:1")
    listing = store.list()
    assert isinstance(listing, Iterator)
    assert [image.name for image in listing] == ["a", "a/z", "a:2", "b"]


def test_history_shows_every_change_with_actor_reason_and_time(
    store: ImageStore,
) -> None:
    store.register("app:prod", descriptor(1), actor="alice", reason="first release")
    store.register("other", descriptor(9), actor="bob")
    store.register("app:prod", descriptor(2), {"rc": "1"}, actor="bob", reason="hotfix")
    store.delete("app:prod", actor="carol", reason="retired")
    entries = store.history("app:prod")
    assert all(isinstance(entry, AuditEntry) for entry in entries)
    assert [(e.position, e.version, e.kind, e.actor, e.reason) for e in entries] == [
        (1, 1, "registered", "alice", "first release"),
        (3, 2, "registered", "bob", "hotfix"),
        (4, 3, "deleted", "carol", "retired"),
    ]
    assert entries[1].target is not None and entries[1].target.digest == digest(2)
    assert entries[1].labels == {"rc": "1"}
    assert entries[2].target is None and entries[2].labels is None
    assert entries[0].timestamp <= entries[1].timestamp <= entries[2].timestamp


def test_history_of_an_unknown_name_is_not_found(store: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match="no history"):
        store.history("never:seen")


def test_actor_defaults_to_the_environment_then_the_os_user(
    store: ImageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGELEDGER_ACTOR", "deploy-bot")
    store.register("app:1", descriptor(1))
    monkeypatch.delenv("IMAGELEDGER_ACTOR")
    monkeypatch.setattr(store, "_os_user", "someone")
    store.register("app:1", descriptor(2))
    assert [e.actor for e in store.history("app:1")] == ["deploy-bot", "someone"]


def test_replay_equals_the_view_and_stops_where_asked(store: ImageStore) -> None:
    store.register("a", descriptor(1))
    store.register("b", descriptor(2), namespace="other")
    store.register("a", descriptor(3))
    store.delete("b", namespace="other")
    everything = {("default", "a"): store.get("a")}
    assert store.replay() == everything
    assert store.replay(until=0) == {}
    at_2 = store.replay(until=2)
    assert sorted(at_2) == [("default", "a"), ("other", "b")]
    assert at_2[("default", "a")].target.digest == digest(1)
    assert store.replay(until=3)[("default", "a")].target.digest == digest(3)
    assert store.replay(until=99) == everything


def test_replay_until_a_timestamp_is_inclusive(store: ImageStore) -> None:
    first = store.register("a", descriptor(1))
    store.register("a", descriptor(2))
    assert store.replay(until=first.updated_at)[("default", "a")].version == 1
    assert store.replay(until=first.updated_at - timedelta(microseconds=1)) == {}
    naive_future = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    assert store.replay(until=naive_future)[("default", "a")].version == 2


@pytest.mark.parametrize("until", [-1, True, "3", 1.5])
def test_replay_refuses_a_bad_point(store: ImageStore, until: Any) -> None:
    with pytest.raises(InvalidArgument, match="until"):
        store.replay(until=until)


def test_rebuild_restores_an_emptied_view_exactly(
    store: ImageStore, run_sql: Callable[[str], None]
) -> None:
    for i in range(30):
        store.register(
            f"app:{i % 7}", descriptor(i), {"i": str(i)}, namespace=f"ns{i % 2}"
        )
    store.delete("app:3", namespace="ns1")
    before = {ns: list(store.list(namespace=ns)) for ns in ("ns0", "ns1")}
    run_sql("DELETE FROM images")
    assert list(store.list(namespace="ns0")) == []

    progress: list[tuple[int, int]] = []
    assert store.rebuild(lambda done, total: progress.append((done, total))) == 31
    assert progress[-1] == (31, 31)
    assert {ns: list(store.list(namespace=ns)) for ns in ("ns0", "ns1")} == before


def test_writes_after_a_rebuild_keep_the_view_current(store: ImageStore) -> None:
    store.register("a", descriptor(1))
    store.rebuild()
    store.register("a", descriptor(2))
    store.register("b", descriptor(3))
    assert store.replay() == {(i.namespace, i.name): i for i in store.list()}


def test_closing_and_reopening_keeps_everything(location: str) -> None:
    with ImageStore.open(location) as store:
        store.register("a", descriptor(1), {"k": "v"}, actor="ci", reason="r")
        store.register("b", descriptor(2))
        store.delete("b")
        listed, history = list(store.list()), store.history("b")
    with ImageStore.open(location) as store:
        assert list(store.list()) == listed
        assert store.history("b") == history
        assert store.register("b", descriptor(2)).version == 3


@sqlite_only
def test_the_store_file_is_wal_with_durable_commits(
    store: ImageStore, db_path: Path
) -> None:
    store.register("a", descriptor(1))
    connection = sqlite3.connect(db_path)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    pooled = store._log._factory.datastore.pool.get_connection()
    try:
        assert pooled._sqlite_conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    finally:
        store._log._factory.datastore.pool.put_connection(pooled)


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("register", {"name": "Bad Name", "target": descriptor(1)}, "invalid name"),
    (
        "register",
        {"name": "a", "target": descriptor(1), "namespace": "a/b"},
        "namespace",
    ),
    ("register", {"name": "a", "target": descriptor(1, size=-5)}, "target.size"),
    ("register", {"name": "a", "target": {"mediaType": "x"}}, "target"),
    ("register", {"name": "a", "target": descriptor(1), "labels": {"": "v"}}, "labels"),
    ("register", {"name": "a", "target": descriptor(1), "actor": ""}, "actor"),
    ("register", {"name": "a", "target": descriptor(1), "reason": "\x00"}, "reason"),
    ("register", {"name": "a", "target": descriptor(1), "expect": "present"}, "expect"),
    ("register", {"name": "a", "target": descriptor(1), "expect": -1}, "expect"),
    ("register", {"name": "a", "target": descriptor(1), "expect": True}, "expect"),
    ("delete", {"name": "a", "if_digest": "sha256:zz"}, "if_digest"),
    ("delete", {"name": "a", "expect": "absent"}, "expect"),
    ("delete", {"name": "A"}, "invalid name"),
]


@pytest.mark.parametrize(("method", "kwargs", "message"), BAD_CALLS)
def test_bad_input_raises_invalid_argument_and_writes_nothing(
    store: ImageStore, log_rows: Rows, method: str, kwargs: dict[str, Any], message: str
) -> None:
    store.register("a", descriptor(1))
    before = log_rows()
    with pytest.raises(InvalidArgument, match=message):
        getattr(store, method)(**kwargs)
    assert log_rows() == before
    assert store.get("a").version == 1


@sqlite_only
def test_a_held_write_lock_makes_writes_busy_but_not_reads_or_opening(
    db_path: Path, log_rows: Rows
) -> None:
    with ImageStore.open(db_path, lock_timeout=0.1) as store:
        store.register("a", descriptor(1))
        before = log_rows()
        blocker = sqlite3.connect(db_path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreError, match="database is busy"):
                store.register("b", descriptor(2))
            assert store.get("a").version == 1
            with ImageStore.open(db_path, lock_timeout=0) as other:
                assert [i.name for i in other.list()] == ["a"]
                with pytest.raises(StoreError, match="database is busy"):
                    other.delete("a")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert log_rows() == before
        assert store.register("b", descriptor(2)).version == 1


@pytest.mark.parametrize("timeout", [-1, "soon", True])
def test_a_bad_lock_timeout_is_refused(db_path: Path, timeout: Any) -> None:
    with pytest.raises(InvalidArgument, match="lock_timeout"):
        ImageStore.open(db_path, lock_timeout=timeout)
    assert not db_path.exists()


def test_a_write_reads_no_events_of_the_name_however_long_its_history(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ImageStore.open(db_path) as store:
        for i in range(300):
            store.register("app:busy", descriptor(i % 2))
    statements: list[str] = []
    create = LedgerSQLiteConnectionPool._create_connection

    def traced(pool: LedgerSQLiteConnectionPool) -> Any:
        connection = create(pool)
        connection._sqlite_conn.set_trace_callback(statements.append)
        return connection

    monkeypatch.setattr(LedgerSQLiteConnectionPool, "_create_connection", traced)
    with ImageStore.open(db_path) as store:
        statements.clear()
        assert store.register("app:busy", descriptor(7)).version == 301
    reads_of_events = [
        s for s in statements if "FROM stored_events" in s and "MAX(" not in s
    ]
    assert reads_of_events == []
    assert any(s.startswith("INSERT INTO stored_events") for s in statements)


def _reset_view(run_sql: Callable[[str], None]) -> None:
    """Empty the current view and its position, as if it had never run."""
    run_sql("DELETE FROM images")
    run_sql(
        "UPDATE tracking SET notification_id=0 WHERE application_name='current_view'"
    )


def test_opening_a_store_whose_view_is_behind_catches_it_up(
    location: str, run_sql: Callable[[str], None]
) -> None:
    with ImageStore.open(location) as store:
        store.register("a", descriptor(1))
        store.register("b", descriptor(2))
        store.delete("b")
        before = list(store.list())
    _reset_view(run_sql)
    with ImageStore.open(location) as store:
        assert list(store.list()) == before
        assert store.register("b", descriptor(3)).version == 3


def test_a_write_onto_a_view_that_is_behind_catches_it_up_first(
    store: ImageStore, run_sql: Callable[[str], None]
) -> None:
    store.register("a", descriptor(1))
    store.register("b", descriptor(2))
    _reset_view(run_sql)
    store.register("c", descriptor(3))
    assert [i.name for i in store.list()] == ["a", "b", "c"]
    assert store.replay() == {(i.namespace, i.name): i for i in store.list()}


@sqlite_only
def test_reader_connections_of_finished_threads_are_released(store: ImageStore) -> None:
    store.register("a", descriptor(1))
    store.get("a")  # this thread's reader (a write reads on the writer's connection)
    seen: list[int] = []

    def read() -> None:
        seen.append(store.get("a").version)

    for _ in range(20):
        thread = threading.Thread(target=read)
        thread.start()
        thread.join()
    gc.collect()
    assert seen == [1] * 20
    # Only this (still running) thread keeps one; the twenty finished ones do not.
    assert len(store._log._factory.datastore._readers) == 1


def test_rebuild_refuses_a_progress_that_is_not_a_function(store: ImageStore) -> None:
    store.register("a", descriptor(1))
    with pytest.raises(InvalidArgument, match="progress"):
        store.rebuild(progress=5)  # type: ignore[arg-type]
    assert store.get("a").version == 1


def test_namespaces_lists_every_namespace_with_an_event_sorted(
    store: ImageStore,
) -> None:
    assert store.namespaces() == []
    for namespace in ("prod", "default", "b-team", "prod"):
        store.register("app:1", descriptor(1), namespace=namespace)
    store.delete("app:1", namespace="b-team")  # still one: its events stay
    assert store.namespaces() == ["b-team", "default", "prod"]
