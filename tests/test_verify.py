"""verify() on real store files tampered with by plain SQL, as an intruder would.

Each test builds the same eight-event log, closes the store, changes the file
with sqlite3 and checks that verify names the first bad position and what is
wrong there. The untouched store verifies.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from conftest import descriptor
from imageledger import Checkpoint, ImageStore
from imageledger.errors import IntegrityError, InvalidArgument
from imageledger.infrastructure.hash_chain import GENESIS, canonical_bytes, link

EVENTS = 8


def _build(path: Path) -> Checkpoint:
    with ImageStore.open(path) as store:
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
def built(db_path: Path) -> Checkpoint:
    return _build(db_path)


def _sql(path: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    connection = sqlite3.connect(path)
    with connection:
        for statement, params in statements:
            connection.execute(statement, params)
    connection.close()


def _state(path: Path, position: int) -> bytes:
    connection = sqlite3.connect(path)
    try:
        state: bytes = connection.execute(
            "SELECT state FROM stored_events WHERE rowid=?", (position,)
        ).fetchone()[0]
        return state
    finally:
        connection.close()


def _failure(path: Path, checkpoint: object = None) -> IntegrityError:
    with ImageStore.open(path) as store, pytest.raises(IntegrityError) as caught:
        store.verify(checkpoint)  # type: ignore[arg-type]
    return caught.value


def test_an_untouched_store_verifies_to_its_checkpoint(
    db_path: Path, built: Checkpoint
) -> None:
    with ImageStore.open(db_path) as store:
        report = store.verify()
        again = store.verify(built)
    assert (report.events, report.position, report.head) == (
        EVENTS,
        EVENTS,
        built.head,
    )
    assert report.checkpoint is None
    assert report.views == ("current_view",)
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
    db_path: Path, built: Checkpoint
) -> None:
    bare = f"{built.position}:{built.head.removeprefix('sha256:')}"
    with ImageStore.open(db_path) as store:
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
    db_path: Path, built: Checkpoint
) -> None:
    state = _state(db_path, 3)
    assert b'"bob"' in state
    _sql(
        db_path,
        (
            "UPDATE stored_events SET state=? WHERE rowid=3",
            (state.replace(b'"bob"', b'"bod"'),),
        ),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (3, "payload changed")
    assert str(failure).startswith("log position 3: payload changed (")


def test_a_changed_timestamp_is_found_at_its_position(
    db_path: Path, built: Checkpoint
) -> None:
    state = _state(db_path, 4)
    timestamp = state.split(b'"timestamp":"')[1].split(b'"')[0]
    earlier = b"2001" + timestamp[4:]
    _sql(
        db_path,
        (
            "UPDATE stored_events SET state=? WHERE rowid=4",
            (state.replace(timestamp, earlier),),
        ),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (4, "payload changed")


def test_a_deleted_event_is_found_at_its_position(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(db_path, ("DELETE FROM stored_events WHERE rowid=5", ()))
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (5, "event missing")


def test_an_event_deleted_with_its_link_is_found_at_its_position(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(
        db_path,
        ("DELETE FROM stored_events WHERE rowid=5", ()),
        ("DELETE FROM event_chain WHERE position=5", ()),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (5, "event missing")


def test_the_first_events_deleted_with_their_links_are_found(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(
        db_path,
        ("DELETE FROM stored_events WHERE rowid<=2", ()),
        ("DELETE FROM event_chain WHERE position<=2", ()),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (1, "event missing")


def test_two_swapped_positions_are_found_as_an_order_change(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(
        db_path,
        ("UPDATE stored_events SET rowid=100 WHERE rowid=2", ()),
        ("UPDATE stored_events SET rowid=2 WHERE rowid=6", ()),
        ("UPDATE stored_events SET rowid=6 WHERE rowid=100", ()),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (2, "order changed")
    assert "written at position 6" in str(failure)


def test_a_forged_event_is_found_at_its_position(
    db_path: Path, built: Checkpoint
) -> None:
    connection = sqlite3.connect(db_path)
    stream, topic, state = connection.execute(
        "SELECT originator_id, topic, state FROM stored_events WHERE rowid=8"
    ).fetchone()
    connection.close()
    _sql(
        db_path,
        (
            "INSERT INTO stored_events VALUES (?, 2, ?, ?)",
            (stream, topic, state.replace(b'"dave"', b'"mallory"')),
        ),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (9, "forged event")


def test_a_forged_event_before_the_first_position_is_found(
    db_path: Path, built: Checkpoint
) -> None:
    connection = sqlite3.connect(db_path)
    stream, topic, state = connection.execute(
        "SELECT originator_id, topic, state FROM stored_events WHERE rowid=8"
    ).fetchone()
    connection.close()
    _sql(
        db_path,
        (
            "INSERT INTO stored_events (rowid, originator_id, originator_version, "
            "topic, state) VALUES (-1, ?, 0, ?, ?)",
            (stream, topic, state),
        ),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (-1, "forged event")


def test_a_changed_link_is_found_at_its_position(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(db_path, ("UPDATE event_chain SET chain=? WHERE position=4", (bytes(32),)))
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (4, "link changed")


def _truncate(path: Path, after: int) -> None:
    _sql(
        path,
        ("DELETE FROM stored_events WHERE rowid>?", (after,)),
        ("DELETE FROM event_chain WHERE position>?", (after,)),
    )


def test_a_tail_truncated_before_a_checkpoint_is_found(
    db_path: Path, built: Checkpoint
) -> None:
    _truncate(db_path, 6)
    failure = _failure(db_path, built)
    assert (failure.position, failure.problem) == (7, "event missing")
    assert "the checkpoint says it reached position 8" in str(failure)


def test_a_truncated_tail_leaves_the_view_ahead_of_the_log(
    db_path: Path, built: Checkpoint
) -> None:
    _truncate(db_path, 6)
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (7, "view differs from the fold")
    assert "reflects log position 8, but the log ends at position 6" in str(failure)


def _rechain(path: Path) -> None:
    """Recompute every link, as an intruder who knows the algorithm would."""
    connection = sqlite3.connect(path)
    with connection:
        previous = GENESIS
        rows = connection.execute(
            "SELECT rowid, originator_id, originator_version, topic, state "
            "FROM stored_events ORDER BY rowid"
        ).fetchall()
        for position, stream, version, topic, state in rows:
            previous = link(previous, canonical_bytes(stream, version, topic, state))
            connection.execute(
                "UPDATE event_chain SET chain=? WHERE position=?", (previous, position)
            )
    connection.close()


def test_a_rewrite_with_recomputed_links_is_caught_by_the_checkpoint(
    db_path: Path, built: Checkpoint
) -> None:
    state = _state(db_path, 3)
    _sql(
        db_path,
        (
            "UPDATE stored_events SET state=? WHERE rowid=3",
            (state.replace(b'"bob"', b'"eve"'),),
        ),
    )
    _rechain(db_path)
    with ImageStore.open(db_path) as store:
        report = store.verify()  # the actor is not in the view: only the chain knows
    assert report.head != built.head
    failure = _failure(db_path, built)
    assert (failure.position, failure.problem) == (8, "history rewritten")
    assert built.head in str(failure)


def test_a_view_row_only_the_view_has_is_found(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(
        db_path,
        (
            "INSERT INTO images SELECT namespace, 'ghost:1', digest, media_type, "
            "target, labels, created_at, updated_at, version, live FROM images "
            "WHERE name='db:1'",
            (),
        ),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (8, "view differs from the fold")
    assert "'ghost:1'" in str(failure)
    assert "it is in the view, but no event in the log made it" in str(failure)


def test_a_view_row_that_differs_from_the_fold_is_found(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(
        db_path,
        (
            "UPDATE images SET digest=? WHERE name='db:1'",
            (descriptor(99)["digest"],),
        ),
    )
    failure = _failure(db_path)
    # db:1's last event is at position 7.
    assert (failure.position, failure.problem) == (7, "view differs from the fold")
    assert "image 'db:1' in namespace 'default': digest is" in str(failure)


def test_a_view_tracking_position_that_differs_from_the_head_is_found(
    db_path: Path, built: Checkpoint
) -> None:
    # Opening would catch the view up, so tamper while the store is open.
    with ImageStore.open(db_path) as store:
        store.verify()
        _sql(
            db_path,
            (
                "UPDATE tracking SET notification_id=3 WHERE application_name=?",
                ("current_view",),
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
    db_path: Path, built: Checkpoint
) -> None:
    with ImageStore.open(db_path) as store:
        store.register("later:1", descriptor(10))
        report = store.verify(built)
        assert store.checkpoint() == (EVENTS + 1, report.head)
    assert report.position == EVENTS + 1


def test_checkpoint_refuses_a_last_event_without_a_link(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(db_path, ("DELETE FROM event_chain WHERE position=8", ()))
    with ImageStore.open(db_path) as store, pytest.raises(IntegrityError) as caught:
        store.checkpoint()
    assert (caught.value.position, caught.value.problem) == (8, "forged event")


def test_labels_given_in_any_order_verify(store: ImageStore) -> None:
    store.register("app:1", descriptor(1), {"zone": "b", "arch": "arm64", "m": "1"})
    assert store.verify().events == 1


def test_a_view_row_with_its_labels_json_in_another_key_order_verifies(
    db_path: Path,
) -> None:
    # Earlier versions wrote labels in the order the caller gave them.
    with ImageStore.open(db_path) as store:
        store.register("app:1", descriptor(1), {"arch": "arm64", "zone": "b"})
    _sql(db_path, ("UPDATE images SET labels=?", ('{"zone":"b","arch":"arm64"}',)))
    with ImageStore.open(db_path) as store:
        assert store.verify().events == 1
        _sql(db_path, ("UPDATE images SET labels=?", ('{"zone":"c","arch":"arm64"}',)))
        with pytest.raises(IntegrityError, match="labels is"):
            store.verify()


def test_an_event_row_emptied_to_nulls_is_a_changed_payload(
    db_path: Path, built: Checkpoint
) -> None:
    _sql(
        db_path,
        (
            "UPDATE stored_events SET originator_id=NULL, originator_version=NULL, "
            "topic=NULL, state=NULL WHERE rowid=3",
            (),
        ),
    )
    failure = _failure(db_path)
    assert (failure.position, failure.problem) == (3, "payload changed")


def test_verify_runs_while_another_connection_holds_the_write_lock(
    db_path: Path, built: Checkpoint
) -> None:
    writer = sqlite3.connect(db_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        # With no lock timeout, needing the write lock would fail at once.
        with ImageStore.open(db_path, lock_timeout=0) as store:
            assert store.verify(built).events == EVENTS
            assert store.checkpoint() == built
    finally:
        writer.execute("ROLLBACK")
        writer.close()
