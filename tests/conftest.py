"""Fixtures shared by the test modules: real SQLite files in a temporary folder,
and real PostgreSQL schemas on a real server.

`store` and `log_rows` run every test that uses them on both backends. The
PostgreSQL server is $IMAGELEDGER_TEST_POSTGRES when set (CI exports the one
it started), else a throwaway cluster this session starts with .ci/postgres.
Each test gets a schema of its own (`?schema=` in the URL), dropped after it.
Without a server the PostgreSQL cases skip, except under CI=true: there they fail.
"""

from __future__ import annotations

import os
import pty
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imageledger import ImageStore

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SCRIPT = ROOT / ".ci" / "postgres"
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
BACKENDS = ["sqlite", "postgres"]

Rows = Callable[[], list[tuple[Any, ...]]]

sqlite_only = pytest.mark.parametrize("location", ["sqlite"], indirect=True)
"""For tests of SQLite's own machinery: `store`, `log_rows` on the file only."""


def digest(n: int) -> str:
    """A valid sha256 digest, different for every n."""
    return f"sha256:{n:064x}"


def descriptor(n: int = 1, **extra: Any) -> dict[str, Any]:
    """OCI JSON of a manifest descriptor, different for every n."""
    return {"mediaType": MANIFEST, "digest": digest(n), "size": 1000 + n, **extra}


def with_schema(url: str, schema: str) -> str:
    """`url` pointing at `schema` (imageledger's `?schema=` parameter)."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def split_schema(url: str) -> tuple[str, str]:
    """(the server's URL, the schema) of a URL made by `with_schema`."""
    head, _, schema = url.rpartition("schema=")
    return head[:-1], schema


def _no_server(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"PostgreSQL tests cannot run in CI: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create schemas on."""
    url = os.environ.get("IMAGELEDGER_TEST_POSTGRES")
    if url:
        yield url
        return
    if not (PG_BIN / "initdb").exists():
        _no_server(f"set IMAGELEDGER_TEST_POSTGRES, or install {PG_BIN}/initdb")
    # Not under pytest's tmp_path: the server runs as another user, who must be
    # able to reach the folder.
    folder = Path(tempfile.mkdtemp(prefix="imageledger-pg-"))
    started = subprocess.run(
        [str(POSTGRES_SCRIPT), "start", str(folder), "--fast"],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        _no_server(f"{POSTGRES_SCRIPT} start failed: {started.stderr.strip()}")
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(POSTGRES_SCRIPT), "stop", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL of a fresh schema of its own on the test server; dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    yield with_schema(postgres_server, schema)
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute("SET lock_timeout = '10s'")
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "imageledger.db"


@pytest.fixture(params=BACKENDS)
def location(request: pytest.FixtureRequest, db_path: Path) -> str:
    """Where the test's store lives: an SQLite file, or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(db_path)
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=BACKENDS)
def new_location(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Makes the location of a new, empty store at each call (for property tests)."""
    made: list[str] = []
    if request.param == "sqlite":

        def make_file() -> str:
            made.append(str(tmp_path / f"store-{len(made)}.db"))
            return made[-1]

        yield make_file
        return
    server: str = request.getfixturevalue("postgres_server")

    def make() -> str:
        made.append(f"t_{uuid.uuid4().hex[:16]}")
        return with_schema(server, made[-1])

    yield make
    import psycopg

    with psycopg.connect(server, autocommit=True) as connection:
        for schema in made:
            connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def store(location: str) -> Iterator[ImageStore]:
    with ImageStore.open(location) as opened:
        yield opened


@pytest.fixture
def run_sql(location: str) -> Callable[[str], None]:
    """Run one statement on the test's database behind the store's back, committed.

    Table names are unqualified: on PostgreSQL they resolve in the store's schema.
    """

    def run(statement: str) -> None:
        if "://" in location:
            import psycopg

            server, schema = split_schema(location)
            with psycopg.connect(server, autocommit=True) as connection:
                connection.execute(f"SET search_path TO {schema}")
                connection.execute(statement)
            return
        connection = sqlite3.connect(location)
        try:
            with connection:
                connection.execute(statement)
        finally:
            connection.close()

    return run


@pytest.fixture
def select_sql(location: str) -> Callable[[str], list[tuple[Any, ...]]]:
    """Run one query on the test's database behind the store's back; its rows.

    Table names are unqualified: on PostgreSQL they resolve in the store's schema.
    """

    def select(statement: str) -> list[tuple[Any, ...]]:
        if "://" in location:
            import psycopg

            server, schema = split_schema(location)
            with psycopg.connect(server, autocommit=True) as connection:
                connection.execute(f"SET search_path TO {schema}")
                return [tuple(row) for row in connection.execute(statement)]
        connection = sqlite3.connect(location)
        try:
            return connection.execute(statement).fetchall()
        finally:
            connection.close()

    return select


@pytest.fixture
def log_rows(location: str) -> Rows:
    """Read the raw event log rows straight from the database, as another tool would.

    Rows are (position, originator id hex, version, topic, state bytes).
    """
    if "://" in location:
        return lambda: postgres_log_rows(location)

    def read() -> list[tuple[Any, ...]]:
        connection = sqlite3.connect(location)
        try:
            return connection.execute(
                "SELECT rowid, originator_id, originator_version, topic, state "
                "FROM stored_events ORDER BY rowid"
            ).fetchall()
        finally:
            connection.close()

    return read


def postgres_log_rows(url: str) -> list[tuple[Any, ...]]:
    """The event rows of the store at `url` (its `?schema=`), in log order."""
    import psycopg

    server, schema = split_schema(url)
    with psycopg.connect(server, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT notification_id, originator_id, originator_version, topic, state "
            f"FROM {schema}.stored_events ORDER BY notification_id"
        ).fetchall()
    return [(r[0], r[1].hex, r[2], r[3], bytes(r[4])) for r in rows]


# The console script, for the command-line tests of every module.

SCRIPT = Path(sys.executable).with_name("imageledger")
Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path, location: str) -> Run:
    """Run the console script in tmp_path on the test's store (an SQLite file or a
    PostgreSQL URL: every test that runs it runs on both); no IMAGELEDGER_* leaks in."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}

    def run_script(
        *args: str, stdin: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), "--db", location, *args],
            input=stdin,
            env={**base_env, **(env or {})},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    return run_script


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    return result.stdout


def when(moment: Any) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def on_a_terminal(location: str, *args: str) -> tuple[int, bytes, bytes]:
    """Run the script with stderr on a pseudo-terminal: (exit, stdout, drawn)."""
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [str(SCRIPT), "--db", location, *args],
            stderr=secondary,
            stdout=subprocess.PIPE,
            timeout=60,
            check=False,
        )
        os.close(secondary)
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(primary)
    return result.returncode, result.stdout, drawn
