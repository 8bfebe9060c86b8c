"""What only PostgreSQL has: URLs, connection errors, schemas, gaps in positions.

Everything else the store does is tested on PostgreSQL by the parametrised
`store` fixture (tests/conftest.py) in the other modules.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import RecordConflictError

from conftest import descriptor, digest, postgres_log_rows, split_schema, with_schema
from imageledger import Descriptor, ImageStore
from imageledger.errors import InvalidArgument, StoreError
from imageledger.infrastructure.postgres import MARKER_TABLE, SCHEMA_VERSION

WORKER = Path(__file__).resolve().with_name("process_worker.py")
BIN = Path(sys.executable).parent


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run one statement in the store's schema, committed; return its rows."""
    server, schema = split_schema(url)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"SET search_path TO {schema}")
        cursor = connection.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def tables(url: str) -> list[str]:
    server, schema = split_schema(url)
    with psycopg.connect(server, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname=%s ORDER BY 1",
            (schema,),
        ).fetchall()
    return [row[0] for row in rows]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_new_schema_becomes_a_marked_store(postgres_url: str) -> None:
    with ImageStore.open(postgres_url) as store:
        store.register("app:1", descriptor(1))
    assert tables(postgres_url) == [
        "audit_index",
        "event_chain",
        MARKER_TABLE,
        "images",
        "stored_events",
        "tracking",
    ]
    assert sql(postgres_url, f"SELECT schema_version FROM {MARKER_TABLE}") == [
        (SCHEMA_VERSION,)
    ]
    assert sql(postgres_url, "SELECT * FROM tracking ORDER BY 1") == [
        ("__migration__", 1),
        ("audit_index", 1),
        ("current_view", 1),
    ]


@pytest.fixture
def fresh_database(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty database (its `public` schema), dropped afterwards."""
    name = f"d_{uuid.uuid4().hex[:16]}"
    server, _, _ = postgres_server.rpartition("/")
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{server}/{name}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_without_a_schema_the_store_is_the_databases_public_schema(
    fresh_database: str,
) -> None:
    with ImageStore.open(fresh_database) as store:
        store.register("app:1", descriptor(1))
    with ImageStore.open(fresh_database.replace("postgresql://", "postgres://")) as s:
        assert s.get("app:1").target.digest == digest(1)
    assert tables(with_schema(fresh_database, "public")) == [
        "audit_index",
        "event_chain",
        MARKER_TABLE,
        "images",
        "stored_events",
        "tracking",
    ]


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    port = closed_port()
    url = f"postgresql://admin:s3cret@127.0.0.1:{port}/images"
    with pytest.raises(StoreError) as caught:
        ImageStore.open(url)
    message = str(caught.value)
    assert message.startswith(
        f"cannot connect to PostgreSQL at 127.0.0.1:{port}/images: "
    )
    assert "refused" in message
    assert "\n" not in message
    assert "s3cret" not in message and "s3cret" not in repr(caught.value.__cause__)


def test_a_missing_database_is_named_in_the_error_without_the_password(
    postgres_server: str,
) -> None:
    host = postgres_server.split("@", 1)[1].rsplit("/", 1)[0]
    url = f"postgresql://postgres:pa%40ss@{host}/no_such_db"
    with pytest.raises(StoreError) as caught:
        ImageStore.open(url)
    message = str(caught.value)
    assert message.startswith(f"cannot connect to PostgreSQL at {host}/no_such_db: ")
    assert 'database "no_such_db" does not exist' in message
    assert "pa@ss" not in message and "pa%40ss" not in message


def test_a_malformed_url_is_refused_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        ImageStore.open("postgresql://admin:s3cret@db.example/images?bogus=1")
    message = str(caught.value)
    assert "not a valid PostgreSQL URL" in message and "bogus" in message
    assert "postgresql://***@db.example/images" in message
    assert "s3cret" not in message and caught.value.__cause__ is None


@pytest.mark.parametrize("schema", ["Upper", "a-b", "1st", "x" * 64, ""])
def test_a_bad_schema_name_is_an_invalid_argument(
    postgres_server: str, schema: str
) -> None:
    with pytest.raises(InvalidArgument, match="invalid location: the schema must be"):
        ImageStore.open(with_schema(postgres_server, schema))


def test_a_schema_with_other_tables_is_refused_untouched(postgres_url: str) -> None:
    server, schema = split_schema(postgres_url)
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
        connection.execute(f"CREATE TABLE {schema}.orders (id int)")
    with pytest.raises(StoreError) as caught:
        ImageStore.open(postgres_url)
    where = postgres_url.split("@", 1)[1]  # host:port/db?schema=...
    assert str(caught.value) == (
        f"PostgreSQL at {where} is not an imageledger store (schema '{schema}' has tables orders); use an "
        "empty database, or a schema of its own with ?schema=NAME in the URL"
    )
    assert tables(postgres_url) == ["orders"]


def test_a_store_with_a_newer_schema_is_refused_untouched(postgres_url: str) -> None:
    with ImageStore.open(postgres_url) as store:
        store.register("app:1", descriptor(1))
    sql(
        postgres_url,
        f"UPDATE {MARKER_TABLE} SET schema_version=%s",
        (SCHEMA_VERSION + 1,),
    )
    before = postgres_log_rows(postgres_url)
    with pytest.raises(
        StoreError, match=f"newer imageledger \\(schema {SCHEMA_VERSION + 1};"
    ):
        ImageStore.open(postgres_url)
    assert postgres_log_rows(postgres_url) == before


def test_a_held_table_lock_makes_writes_busy_but_not_reads_or_opening(
    postgres_url: str,
) -> None:
    with ImageStore.open(postgres_url, lock_timeout=0.1) as store:
        store.register("app:1", descriptor(1))
        before = postgres_log_rows(postgres_url)
        server, schema = split_schema(postgres_url)
        with psycopg.connect(server) as blocker:  # another host, mid-write
            blocker.execute(f"LOCK TABLE {schema}.stored_events IN EXCLUSIVE MODE")
            with pytest.raises(StoreError, match="^database is busy: .*lock timeout"):
                store.register("app:2", descriptor(2))
            with ImageStore.open(postgres_url, lock_timeout=0) as other:
                assert other.get("app:1").version == 1
                with pytest.raises(StoreError, match="^database is busy"):
                    other.delete("app:1")
            assert [i.name for i in store.list()] == ["app:1"]
        assert postgres_log_rows(postgres_url) == before
        assert store.register("app:2", descriptor(2)).version == 1


def test_a_gap_in_positions_does_not_stop_the_view(postgres_url: str) -> None:
    with ImageStore.open(postgres_url) as store:
        store.register("app:1", descriptor(1))
        # A write that rolled back elsewhere used up a position for good.
        sql(postgres_url, "SELECT nextval('stored_events_notification_id_seq')")
        store.register("app:2", descriptor(2))
        store.register("app:1", descriptor(3))
        positions = [row[0] for row in postgres_log_rows(postgres_url)]
        assert positions == [1, 3, 4]
        assert sql(
            postgres_url,
            "SELECT notification_id FROM tracking WHERE application_name='current_view'",
        ) == [(4,)]
        listed = {(i.namespace, i.name): i for i in store.list()}
        assert store.replay() == listed
        assert listed[("default", "app:1")].target.digest == digest(3)


def test_a_conflicting_write_rolls_back_whole_and_leaves_a_gap(
    postgres_url: str,
) -> None:
    with ImageStore.open(postgres_url) as first, ImageStore.open(postgres_url) as other:
        first.register("app:1", descriptor(1))
        # Both load version 1; the second to append conflicts, re-reads, retries.
        image_a = first._log.load("default", "app:1")
        image_b = other._log.load("default", "app:1")
        assert image_a is not None and image_b is not None
        target = Descriptor.from_oci(descriptor(1))
        image_a.register(target, {"by": "a"}, actor="a", reason=None)
        image_b.register(target, {"by": "b"}, actor="b", reason=None)
        first._log.append(image_a)
        with pytest.raises(RecordConflictError):
            other._log.append(image_b)
        assert other.register("app:1", descriptor(1), {"by": "b"}).version == 3
        positions = [row[0] for row in postgres_log_rows(postgres_url)]
        assert positions == [1, 2, 4]  # position 3 went with the rolled-back insert
        assert other.replay() == {(i.namespace, i.name): i for i in first.list()}


def test_processes_creating_a_new_store_at_once_all_succeed(
    postgres_server: str,
) -> None:
    for round_ in range(3):
        url = with_schema(postgres_server, f"race_{uuid.uuid4().hex[:12]}")
        processes = [
            subprocess.Popen(
                [sys.executable, str(WORKER), "register", url, f"app:{i}", str(i)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]
        for process in processes:
            _, err = process.communicate(timeout=120)
            assert process.returncode == 0, f"round {round_}: {err}"
        with ImageStore.open(url) as store:
            assert [image.name for image in store.list()] == [
                f"app:{i}" for i in range(4)
            ]
            assert store._log.head() == 4
        sql(url, f"DROP SCHEMA {split_schema(url)[1]} CASCADE")


def test_the_command_line_runs_on_postgresql(postgres_url: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "imageledger"), "--db", postgres_url, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    done = run(
        "register",
        "app:1",
        "--digest",
        digest(5),
        "--media-type",
        "application/vnd.oci.image.manifest.v1+json",
        "--size",
        "9",
    )
    assert (done.returncode, done.stderr) == (0, "")
    listed = run("ls", "-q")
    assert (listed.returncode, listed.stdout) == (0, "app:1\n")
    missing = run("get", "app:2")
    assert missing.returncode == 3


def test_sqlite_users_and_the_command_line_never_import_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys; from imageledger import ImageStore; import imageledger.cli; "
        f"ImageStore.open({str(tmp_path / 'x.db')!r}).close(); "
        "print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout == "[]\n"


def test_without_psycopg_a_url_says_how_to_install_it(postgres_url: str) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from imageledger import ImageStore\n"
        "from imageledger.errors import StoreError\n"
        f"try: ImageStore.open({postgres_url!r})\n"
        "except StoreError as e: print(e)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert "pip install 'imageledger[postgres]'" in done.stdout


def test_a_store_made_before_the_hash_chain_is_refused_untouched(
    postgres_url: str,
) -> None:
    with ImageStore.open(postgres_url) as store:
        store.register("app:1", descriptor(1))
    sql(postgres_url, "DROP TABLE event_chain")
    with pytest.raises(StoreError, match="without the hash chain") as caught:
        ImageStore.open(postgres_url)
    assert "create it again" in str(caught.value)
    assert "event_chain" not in tables(postgres_url)
    assert len(sql(postgres_url, "SELECT * FROM stored_events")) == 1


def test_a_schema_1_store_is_upgraded_by_indexing_its_log(postgres_url: str) -> None:
    with ImageStore.open(postgres_url) as store:
        store.register("a", descriptor(1), actor="alice")
        store.delete("a", actor="bob")
        entries = list(store.log())
    sql(postgres_url, "DROP TABLE audit_index")
    sql(postgres_url, "DELETE FROM tracking WHERE application_name='audit_index'")
    sql(postgres_url, "ALTER TABLE images DROP COLUMN immutable")
    sql(postgres_url, f"UPDATE {MARKER_TABLE} SET schema_version=1")
    with ImageStore.open(postgres_url) as store:
        assert list(store.log()) == entries
        store.register("b", descriptor(2), actor="carol")
        assert [e.actor for e in store.log()] == ["alice", "bob", "carol"]
        assert store.verify().views == ("current_view", "audit_index")
    assert sql(postgres_url, f"SELECT schema_version FROM {MARKER_TABLE}") == [
        (SCHEMA_VERSION,)
    ]
    assert sql(postgres_url, "SELECT COUNT(*) FROM audit_index") == [(3,)]
