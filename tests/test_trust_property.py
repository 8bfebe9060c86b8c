"""For any history and any single plain-SQL tamper of one table, the next write
refuses with IntegrityError or verify (against a checkpoint taken before the
tamper) fails: never "write succeeded" and "verify ok" with history changed.

Each example builds the same history in two stores, tampers with one, makes
the same next write in both, and, when the tampered store still verifies,
requires it to mean exactly what the untouched one means.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import descriptor, digest, split_schema
from imageledger import ImageStore
from imageledger.errors import ImageLedgerError, IntegrityError

NAMES = ["app:1", "app:2", "base"]

operation = st.tuples(
    st.sampled_from(["register", "register", "bind", "delete", "force"]),
    st.sampled_from(NAMES),
    st.integers(min_value=0, max_value=3),  # which target
    st.sampled_from([{}, {"team": "a"}]),
)

# (table, how the row is picked, the change): statements are written for
# SQLite; on PostgreSQL `rowid` is `notification_id`. `?` is the row's key.
TAMPERS: list[tuple[str, str]] = [
    ("stored_events", "UPDATE stored_events SET state=? WHERE rowid=?"),
    (
        "stored_events",
        "UPDATE stored_events SET originator_version=originator_version+100 "
        "WHERE rowid=?",
    ),
    ("stored_events", "DELETE FROM stored_events WHERE rowid=?"),
    ("event_chain", "UPDATE event_chain SET chain=? WHERE position=?"),
    ("event_chain", "DELETE FROM event_chain WHERE position=?"),
    ("images", "UPDATE images SET immutable=NOT immutable WHERE name=?"),
    ("images", "UPDATE images SET live=NOT live WHERE name=?"),
    ("images", "UPDATE images SET version=version+1 WHERE name=?"),
    ("images", "UPDATE images SET version=version-1 WHERE name=?"),
    (
        "images",
        f"UPDATE images SET digest='{digest(7)}', target='"
        f'{{"digest":"{digest(7)}","mediaType":"{descriptor(7)["mediaType"]}",'
        f'"size":{descriptor(7)["size"]}}}\' WHERE name=?',
    ),
    ("images", """UPDATE images SET labels='{"team":"z"}' WHERE name=?"""),
    (
        "images",
        "UPDATE images SET created_at='2001-01-01T00:00:00+00:00', "
        "updated_at='2001-01-01T00:00:00+00:00' WHERE name=?",
    ),
    ("images", "DELETE FROM images WHERE name=?"),
    ("audit_index", "UPDATE audit_index SET immutable=NOT immutable WHERE position=?"),
    ("audit_index", "UPDATE audit_index SET since=since-1 WHERE position=?"),
    ("audit_index", f"UPDATE audit_index SET digest='{digest(7)}' WHERE position=?"),
    ("audit_index", "UPDATE audit_index SET version=version+1 WHERE position=?"),
    ("audit_index", "DELETE FROM audit_index WHERE position=?"),
    ("tracking", "UPDATE tracking SET notification_id=? WHERE application_name=?"),
    ("tracking", "DELETE FROM tracking WHERE application_name=?"),
]


def apply(store: ImageStore, op: tuple[str, str, int, dict[str, str]]) -> str:
    """Make one change; what came of it (`ok` or the error's class)."""
    kind, name, target, labels = op
    try:
        if kind in ("register", "bind"):
            store.register(
                name, descriptor(target), labels, immutable=kind == "bind", actor="a"
            )
        else:
            store.delete(name, force=kind == "force", actor="a")
    except ImageLedgerError as e:
        return type(e).__name__
    return "ok"


def meaning(store: ImageStore) -> tuple[Any, ...]:
    """What the store's history says, without the times it was written at."""
    log = [
        e.model_dump(exclude={"position", "timestamp"})
        for e in store.log(namespace=None)
    ]
    images = [
        (i.name, i.target, i.labels, i.version, i.immutable) for i in store.list()
    ]
    replayed = sorted(
        (key, i.target, i.labels, i.version, i.immutable)
        for key, i in store.replay().items()
    )
    return log, images, replayed


@contextlib.contextmanager
def database(location: str) -> Iterator[Callable[..., list[Any]]]:
    """A function running one statement (SQLite style) on the store's tables."""
    if "://" in location:
        import psycopg

        server, schema = split_schema(location)
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute(f"SET search_path TO {schema}")

            def run_pg(statement: str, *params: Any) -> list[Any]:
                cursor = connection.execute(
                    statement.replace("rowid", "notification_id").replace("?", "%s"),
                    params,
                )
                return (
                    [tuple(r) for r in cursor.fetchall()] if cursor.description else []
                )

            yield run_pg
        return
    connection = sqlite3.connect(location, isolation_level=None)
    try:

        def run_sqlite(statement: str, *params: Any) -> list[Any]:
            return connection.execute(statement, params).fetchall()

        yield run_sqlite
    finally:
        connection.close()


def tamper(location: str, which: int, pick: int) -> None:
    """Change one table of the store at `location` behind its back (a change
    the database's own constraints refuse is not made)."""
    with contextlib.suppress(sqlite3.IntegrityError, *_postgres_refusals()):
        _tamper(location, which, pick)


def _postgres_refusals() -> tuple[type[Exception], ...]:
    try:
        import psycopg
    except ImportError:
        return ()
    return (psycopg.errors.IntegrityError,)


def _tamper(location: str, which: int, pick: int) -> None:
    table, statement = TAMPERS[which % len(TAMPERS)]
    with database(location) as sql:
        if table == "stored_events":
            rows = sql("SELECT rowid, state FROM stored_events ORDER BY rowid")
        elif table == "event_chain":
            rows = sql("SELECT position, chain FROM event_chain ORDER BY position")
        elif table == "images":
            rows = sql("SELECT name FROM images ORDER BY name")
        elif table == "audit_index":
            rows = sql("SELECT position FROM audit_index ORDER BY position")
        else:
            rows = sql("SELECT application_name FROM tracking ORDER BY 1")
            rows = [r for r in rows if r[0] != "__migration__"]
        if not rows:
            return
        row = rows[pick % len(rows)]
        key = row[0]
        if statement.startswith("UPDATE stored_events SET state"):
            state = bytes(row[1])
            changed = state.replace(b"000000001", b"000000007", 1)
            changed = changed.replace(b'"immutable":true,', b"", 1)
            sql(statement, changed if changed != state else state[:-1] + b" }", key)
        elif statement.startswith("UPDATE event_chain"):
            link = bytes(row[1])
            sql(statement, bytes([link[0] ^ 1]) + link[1:], key)
        elif statement.startswith("UPDATE tracking"):
            head = len(sql("SELECT rowid FROM stored_events"))
            sql(statement, pick % (head + 3), key)
        else:
            sql(statement, key)


_FRESH_STORES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=80, deadline=None, suppress_health_check=_FRESH_STORES)
@given(
    ops=st.lists(operation, min_size=1, max_size=8),
    which=st.integers(min_value=0, max_value=len(TAMPERS) - 1),
    pick=st.integers(min_value=0, max_value=50),
    write=operation,
)
def test_no_tamper_is_both_written_over_and_verified(
    new_location: Callable[[], str],
    ops: list[tuple[str, str, int, dict[str, str]]],
    which: int,
    pick: int,
    write: tuple[str, str, int, dict[str, str]],
) -> None:
    tampered, clean = new_location(), new_location()
    for location in (tampered, clean):
        with ImageStore.open(location) as store:
            for op in ops:
                apply(store, op)
    with ImageStore.open(tampered) as store:
        checkpoint = store.checkpoint()
        events_before = store._log.head()
    tamper(tampered, which, pick)

    with ImageStore.open(clean) as store:
        expected_outcome = apply(store, write)
        expected = meaning(store)
    try:
        with ImageStore.open(tampered) as store:
            outcome = apply(store, write)
    except ImageLedgerError as e:  # the tamper stopped the store from opening
        outcome = type(e).__name__
    table = TAMPERS[which][0]
    if outcome == "IntegrityError":
        event(f"{table}: the write refused")
        with database(tampered) as sql:
            assert len(sql("SELECT rowid FROM stored_events")) <= events_before
        return
    try:
        with ImageStore.open(tampered) as store:
            store.verify(checkpoint)
            got = meaning(store)
    except IntegrityError:
        event(f"{table}: verify failed")
        return  # the tamper is found: what the write did is not proven
    event(f"{table}: verified, same meaning")
    assert outcome == expected_outcome
    assert got == expected
