"""verify() on real stores tampered with by plain SQL, as an intruder would.

Each test builds the same eight-event log, closes the store, changes its rows
behind its back (with sqlite3 on the file, or psycopg in the PostgreSQL
schema) and checks that verify names the first bad position and what is wrong
there. The untouched store verifies. Tests run on both backends unless they are
about one of them.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
from typing import Any

import pytest

from conftest import Rows, descriptor, split_schema, sqlite_only
from imageledger import Checkpoint, ImageStore
from imageledger.errors import IntegrityError, InvalidArgument
from imageledger.infrastructure.hash_chain import GENESIS, canonical_bytes, link

EVENTS = 8


def _build(location: str) -> Checkpoint:
    with ImageStore.open(location) as store:
        store.register("app:1", descriptor(1), actor="alice", reason="first")
        store.register("app:2", descriptor(2), actor="alice")
        store.register("app:1", descriptor(3), actor="bob")
        store.register("db:1", descriptor(4), {"tier": "gold"}, actor="carol")
        store.delete("app:2", actor="bob", reason="retired")
        store.register("app:2", descriptor(5), actor="alice")
        store.register("db:1", descriptor(6), actor="carol")
        store.register("web:1", descriptor(7), actor="dave")
        return store.checkpoint()


@pytest.fixture
def built(location: str) -> Checkpoint:
    return _build(location)


def _postgres(location: str) -> bool:
    return "://" in location


def _sql(location: str, *statements: tuple[str, tuple[object, ...]]) -> list[Any]:
    """Run statements in one committed transaction; the last one's rows.

    Statements are written for SQLite (`rowid`, `?`); on PostgreSQL the
    position is `notification_id` and parameters are `%s`.
    """
    rows: list[Any] = []
    if _postgres(location):
        import psycopg

        server, schema = split_schema(location)
        with psycopg.connect(server) as connection, connection.transaction():
            connection.execute(f"SET LOCAL search_path TO {schema}")
            for statement, params in statements:
                cursor = connection.execute(
                    statement.replace("rowid", "notification_id").replace("?", "%s"),
                    params,
                )
                rows = cursor.fetchall() if cursor.description else []
        return rows
    connection = sqlite3.connect(location)
    with connection:
        for statement, params in statements:
            rows = connection.execute(statement, params).fetchall()
    connection.close()
    return rows


def _state(location: str, position: int) -> bytes:
    rows = _sql(
        location, ("SELECT state FROM stored_events WHERE rowid=?", (position,))
    )
    return bytes(rows[0][0])


def _failure(location: str, checkpoint: object = None) -> IntegrityError:
    with ImageStore.open(location) as store, pytest.raises(IntegrityError) as caught:
        store.verify(checkpoint)  # type: ignore[arg-type]
    return caught.value


def test_an_untouched_store_verifies_to_its_checkpoint(
    location: str, built: Checkpoint
) -> None:
    with ImageStore.open(location) as store:
        report = store.verify()
        again = store.verify(built)
    assert (report.events, report.position, report.head) == (
        EVENTS,
        EVENTS,
        built.head,
    )
    assert report.checkpoint is None
    assert report.views == ("current_view", "audit_index")
    assert again.checkpoint == built
    assert built.position == EVENTS
    assert built.head.startswith("sha256:")
    assert len(built.head) == len("sha256:") + 64


def test_an_empty_store_verifies_at_the_genesis(store: ImageStore) -> None:
    report = store.verify()
    assert (report.events, report.position) == (0, 0)
    assert report.head == "sha256:" + GENESIS.hex()
    assert store.checkpoint() == (0, report.head)


def test_the_checkpoint_text_form_is_accepted_with_or_without_its_prefix(
    location: str, built: Checkpoint
) -> None:
    bare = f"{built.position}:{built.head.removeprefix('sha256:')}"
    with ImageStore.open(location) as store:
        assert store.verify(str(built)).checkpoint == built
        assert store.verify(bare).checkpoint == built
        assert store.verify((built.position, built.head)).checkpoint == built
        earlier = store.verify((0, "sha256:" + GENESIS.hex()))
    assert str(built) == f"{EVENTS}:{built.head}"
    assert earlier.position == EVENTS


@pytest.mark.parametrize(
    ("checkpoint", "rule"),
    [
        ("8", "is not POSITION:HEAD"),
        ("-1:" + "0" * 64, "is not POSITION:HEAD"),
        ("8:sha256:" + "0" * 63, "is not POSITION:HEAD"),
        ("8:md5:" + "0" * 64, "is not POSITION:HEAD"),
        ((8,), "must be (position, head)"),
        (8, "must be (position, head) or 'POSITION:HEAD', not int"),
        ((True, "0" * 64), "the position must be a whole number"),
        ((-1, "0" * 64), "the position must be a whole number"),
        ((8, "sha256:xyz"), "the head must be sha256: and 64 hex digits"),
        ((8, b"short"), "the head must be sha256: and 64 hex digits"),
    ],
)
def test_a_malformed_checkpoint_is_an_invalid_argument(
    store: ImageStore, checkpoint: object, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        store.verify(checkpoint)  # type: ignore[arg-type]
    assert caught.value.field == "checkpoint"
    assert rule in caught.value.rule


def test_a_changed_payload_byte_is_found_at_its_position(
    location: str, built: Checkpoint
) -> None:
    state = _state(location, 3)
    assert b'"bob"' in state
    _sql(
        location,
        (
            "UPDATE stored_events SET state=? WHERE rowid=3",
            (state.replace(b'"bob"', b'"bod"'),),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (3, "payload changed")
    assert str(failure).startswith("log position 3: payload changed (")


def test_a_changed_timestamp_is_found_at_its_position(
    location: str, built: Checkpoint
) -> None:
    state = _state(location, 4)
    timestamp = state.split(b'"timestamp":"')[1].split(b'"')[0]
    earlier = b"2001" + timestamp[4:]
    _sql(
        location,
        (
            "UPDATE stored_events SET state=? WHERE rowid=4",
            (state.replace(timestamp, earlier),),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (4, "payload changed")


def test_a_deleted_event_is_found_at_its_position(
    location: str, built: Checkpoint
) -> None:
    _sql(location, ("DELETE FROM stored_events WHERE rowid=5", ()))
    failure = _failure(location)
    assert (failure.position, failure.problem) == (5, "event missing")


def test_an_event_deleted_with_its_link_is_found_at_its_position(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        ("DELETE FROM stored_events WHERE rowid=5", ()),
        ("DELETE FROM event_chain WHERE position=5", ()),
    )
    failure = _failure(location)
    if _postgres(location):
        # Positions may skip numbers there: the gap could be a rolled-back
        # insert, but the next event does not follow from the one before it.
        assert (failure.position, failure.problem) == (6, "payload changed")
        assert "events between positions 4 and 6 were removed" in str(failure)
    else:
        assert (failure.position, failure.problem) == (5, "event missing")


def test_the_first_events_deleted_with_their_links_are_found(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        ("DELETE FROM stored_events WHERE rowid<=2", ()),
        ("DELETE FROM event_chain WHERE position<=2", ()),
    )
    failure = _failure(location)
    if _postgres(location):
        assert (failure.position, failure.problem) == (3, "payload changed")
        assert "events between positions 0 and 3 were removed" in str(failure)
    else:
        assert (failure.position, failure.problem) == (1, "event missing")


def test_two_swapped_positions_are_found_as_an_order_change(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        ("UPDATE stored_events SET rowid=100 WHERE rowid=2", ()),
        ("UPDATE stored_events SET rowid=2 WHERE rowid=6", ()),
        ("UPDATE stored_events SET rowid=6 WHERE rowid=100", ()),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (2, "order changed")
    assert "written at position 6" in str(failure)


def test_a_forged_event_is_found_at_its_position(
    location: str, built: Checkpoint
) -> None:
    [(stream, topic, state)] = _sql(
        location,
        ("SELECT originator_id, topic, state FROM stored_events WHERE rowid=8", ()),
    )
    _sql(
        location,
        (
            "INSERT INTO stored_events (originator_id, originator_version, topic, "
            "state) VALUES (?, 2, ?, ?)",
            (stream, topic, bytes(state).replace(b'"dave"', b'"mallory"')),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (9, "forged event")


def test_a_forged_event_before_the_first_position_is_found(
    location: str, built: Checkpoint
) -> None:
    [(stream, topic, state)] = _sql(
        location,
        ("SELECT originator_id, topic, state FROM stored_events WHERE rowid=8", ()),
    )
    _sql(
        location,
        (
            "INSERT INTO stored_events (rowid, originator_id, originator_version, "
            "topic, state) VALUES (-1, ?, 0, ?, ?)",
            (stream, topic, state),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (-1, "forged event")


def test_a_changed_link_is_found_at_its_position(
    location: str, built: Checkpoint
) -> None:
    _sql(location, ("UPDATE event_chain SET chain=? WHERE position=4", (bytes(32),)))
    failure = _failure(location)
    assert (failure.position, failure.problem) == (4, "link changed")


def _truncate(location: str, after: int) -> None:
    _sql(
        location,
        ("DELETE FROM stored_events WHERE rowid>?", (after,)),
        ("DELETE FROM event_chain WHERE position>?", (after,)),
    )


def test_a_tail_truncated_before_a_checkpoint_is_found(
    location: str, built: Checkpoint
) -> None:
    _truncate(location, 6)
    failure = _failure(location, built)
    assert (failure.position, failure.problem) == (7, "event missing")
    assert "the checkpoint says it reached position 8" in str(failure)


def test_a_truncated_tail_leaves_the_view_ahead_of_the_log(
    location: str, built: Checkpoint
) -> None:
    _truncate(location, 6)
    failure = _failure(location)
    assert (failure.position, failure.problem) == (7, "view differs from the fold")
    assert "reflects log position 8, but the log ends at position 6" in str(failure)


def _rechain(location: str, log_rows: Rows) -> None:
    """Recompute every link, as an intruder who knows the algorithm would."""
    previous, updates = GENESIS, []
    for position, stream, version, topic, state in log_rows():
        previous = link(previous, canonical_bytes(stream, version, topic, state))
        updates.append(
            ("UPDATE event_chain SET chain=? WHERE position=?", (previous, position))
        )
    _sql(location, *updates)


def test_a_rewrite_with_recomputed_links_is_caught_by_the_checkpoint(
    location: str, built: Checkpoint, log_rows: Rows
) -> None:
    state = _state(location, 3)
    _sql(
        location,
        (
            "UPDATE stored_events SET state=? WHERE rowid=3",
            (state.replace(b'"bob"', b'"eve"'),),
        ),
    )
    _rechain(location, log_rows)
    _sql(location, ("UPDATE audit_index SET actor='eve' WHERE position=3", ()))
    with ImageStore.open(location) as store:
        report = store.verify()  # views rewritten too: only the chain knows
    assert report.head != built.head
    failure = _failure(location, built)
    assert (failure.position, failure.problem) == (8, "history rewritten")
    assert built.head in str(failure)


def test_a_rewrite_with_recomputed_links_but_an_old_audit_index_is_found(
    location: str, built: Checkpoint, log_rows: Rows
) -> None:
    state = _state(location, 3)
    _sql(
        location,
        (
            "UPDATE stored_events SET state=? WHERE rowid=3",
            (state.replace(b'"bob"', b'"eve"'),),
        ),
    )
    _rechain(location, log_rows)
    failure = _failure(location)
    assert (failure.position, failure.problem) == (3, "view differs from the fold")
    assert "actor is 'bob' in the audit index, 'eve' in the log" in str(failure)


def test_an_audit_index_row_without_an_event_is_found(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        (
            "INSERT INTO audit_index SELECT 100, namespace, name, version, kind, "
            "digest, timestamp, actor, since, immutable FROM audit_index WHERE position=8",
            (),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (100, "view differs from the fold")
    assert (
        "the audit index has a row at position 100, but the log has no event there"
        in str(failure)
    )


def test_a_view_row_only_the_view_has_is_found(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        (
            "INSERT INTO images SELECT namespace, 'ghost:1', digest, media_type, "
            "target, labels, created_at, updated_at, version, live, immutable FROM images "
            "WHERE name='db:1'",
            (),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (8, "view differs from the fold")
    assert "'ghost:1'" in str(failure)
    assert "it is in the view, but no event in the log made it" in str(failure)


def test_a_view_row_that_differs_from_the_fold_is_found(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        (
            "UPDATE images SET digest=? WHERE name='db:1'",
            (descriptor(99)["digest"],),
        ),
    )
    failure = _failure(location)
    # db:1's last event is at position 7.
    assert (failure.position, failure.problem) == (7, "view differs from the fold")
    assert "image 'db:1' in namespace 'default': digest is" in str(failure)


@pytest.mark.parametrize("view", ["current_view", "audit_index"])
def test_a_view_tracking_position_that_differs_from_the_head_is_found(
    location: str, built: Checkpoint, view: str
) -> None:
    # Opening would catch the view up, so tamper while the store is open.
    with ImageStore.open(location) as store:
        store.verify()
        _sql(
            location,
            (
                "UPDATE tracking SET notification_id=3 WHERE application_name=?",
                (view,),
            ),
        )
        with pytest.raises(IntegrityError) as caught:
            store.verify()
    assert (caught.value.position, caught.value.problem) == (
        4,
        "view differs from the fold",
    )
    assert "reflects log position 3, but the log ends at position 8" in str(
        caught.value
    )


def test_writes_after_verification_extend_the_checkpoint(
    location: str, built: Checkpoint
) -> None:
    with ImageStore.open(location) as store:
        store.register("later:1", descriptor(10))
        report = store.verify(built)
        assert store.checkpoint() == (EVENTS + 1, report.head)
    assert report.position == EVENTS + 1


def test_checkpoint_refuses_a_last_event_without_a_link(
    location: str, built: Checkpoint
) -> None:
    _sql(location, ("DELETE FROM event_chain WHERE position=8", ()))
    with ImageStore.open(location) as store, pytest.raises(IntegrityError) as caught:
        store.checkpoint()
    assert (caught.value.position, caught.value.problem) == (8, "forged event")


def test_labels_given_in_any_order_verify(store: ImageStore) -> None:
    store.register("app:1", descriptor(1), {"zone": "b", "arch": "arm64", "m": "1"})
    assert store.verify().events == 1


def test_a_view_row_with_its_labels_json_in_another_key_order_verifies(
    location: str,
) -> None:
    # Earlier versions wrote labels in the order the caller gave them.
    with ImageStore.open(location) as store:
        store.register("app:1", descriptor(1), {"arch": "arm64", "zone": "b"})
    _sql(location, ("UPDATE images SET labels=?", ('{"zone":"b","arch":"arm64"}',)))
    with ImageStore.open(location) as store:
        assert store.verify().events == 1
        _sql(location, ("UPDATE images SET labels=?", ('{"zone":"c","arch":"arm64"}',)))
        with pytest.raises(IntegrityError, match="labels is"):
            store.verify()


@sqlite_only  # PostgreSQL's columns are NOT NULL
def test_an_event_row_emptied_to_nulls_is_a_changed_payload(
    location: str, built: Checkpoint
) -> None:
    _sql(
        location,
        (
            "UPDATE stored_events SET originator_id=NULL, originator_version=NULL, "
            "topic=NULL, state=NULL WHERE rowid=3",
            (),
        ),
    )
    failure = _failure(location)
    assert (failure.position, failure.problem) == (3, "payload changed")


@sqlite_only
def test_verify_runs_while_another_connection_holds_the_write_lock(
    location: str, built: Checkpoint
) -> None:
    writer = sqlite3.connect(location, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        # With no lock timeout, needing the write lock would fail at once.
        with ImageStore.open(location, lock_timeout=0) as store:
            assert store.verify(built).events == EVENTS
            assert store.checkpoint() == built
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_verify_on_postgresql_runs_while_a_writer_holds_the_table_lock(
    postgres_url: str,
) -> None:
    import psycopg

    built = _build(postgres_url)
    server, schema = split_schema(postgres_url)
    with psycopg.connect(server) as writer, writer.transaction(force_rollback=True):
        writer.execute(f"LOCK TABLE {schema}.stored_events IN EXCLUSIVE MODE")
        # A write would wait for the lock and fail after lock_timeout.
        with ImageStore.open(postgres_url, lock_timeout=0) as store:
            assert store.verify(built).events == EVENTS
            assert store.checkpoint() == built


def test_the_head_recomputed_from_the_raw_rows_with_hashlib_alone_is_the_checkpoint(
    log_rows: Rows, built: Checkpoint
) -> None:
    # As the script in docs/integrity.md does: the same bytes on both backends.
    rows = log_rows()
    head = bytes(32)
    for _, stream, version, topic, state in rows:
        fields = [stream.encode(), str(version).encode(), topic.encode(), state]
        canonical = b"".join(struct.pack(">Q", len(f)) + f for f in fields)
        head = hashlib.sha256(head + canonical).digest()
    assert f"{rows[-1][0]}:sha256:{head.hex()}" == str(built)


def _skip_a_position(location: str) -> None:
    """Use up a sequence number, as an insert that rolled back does."""
    _sql(
        location,
        (
            "SELECT nextval(pg_get_serial_sequence('stored_events', "
            "'notification_id'))",
            (),
        ),
    )


def test_on_postgresql_a_skipped_position_is_no_missing_event(
    postgres_url: str,
) -> None:
    built = _build(postgres_url)
    _skip_a_position(postgres_url)
    with ImageStore.open(postgres_url) as store:
        store.register("after:1", descriptor(20), actor="erin")
        report = store.verify(built)
        assert store.checkpoint() == (EVENTS + 2, report.head)
    assert (report.events, report.position) == (EVENTS + 1, EVENTS + 2)


def test_on_postgresql_a_changed_payload_after_a_skipped_position_is_found(
    postgres_url: str,
) -> None:
    _build(postgres_url)
    _skip_a_position(postgres_url)
    with ImageStore.open(postgres_url) as store:
        store.register("after:1", descriptor(20), actor="erin")
    after = EVENTS + 2
    state = _state(postgres_url, after)
    _sql(
        postgres_url,
        (
            "UPDATE stored_events SET state=? WHERE rowid=?",
            (state.replace(b'"erin"', b'"eris"'), after),
        ),
    )
    failure = _failure(postgres_url)
    assert (failure.position, failure.problem) == (after, "payload changed")


def test_a_batch_links_its_events_in_log_order(
    store: ImageStore, log_rows: Rows
) -> None:
    store.register("app:1", descriptor(1))
    store.register_many([(f"batch:{i}", descriptor(10 + i)) for i in range(5)])
    report = store.verify()
    rows = log_rows()
    head = GENESIS
    for _, stream, version, topic, state in rows:
        head = link(head, canonical_bytes(stream, version, topic, state))
    assert (report.events, report.position) == (6, rows[-1][0])
    assert report.head == "sha256:" + head.hex() == store.checkpoint().head
