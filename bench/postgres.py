"""Durable single registers on PostgreSQL against a raw psycopg loop, in one run.

- raw: a hand-written psycopg transaction per register doing the same logical
  work (insert the event row, upsert the view row), on its own connection;
- imageledger: `ImageStore.register` of a fresh name, the view folded into the
  event's transaction (plus the events table lock that keeps positions in
  commit order, the NOTIFY, the tracking compare-and-set).

Both run in throwaway schemas of the server at URL, dropped at the end, and take
turns in rounds so that both see the same disk. The server should be durable
(fsync on, synchronous_commit on), as `.ci/postgres start DIR` leaves it.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg

from imageledger import ImageStore


def _target(i: int) -> dict[str, object]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{i:064x}",
        "size": 1000 + i,
    }


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def _raw_register(
    connection: psycopg.Connection[Any],
    schema: str,
    name: str,
    target: dict[str, object],
) -> None:
    """One durable transaction: insert the event row, upsert the view row."""
    now = datetime.now(UTC).isoformat()
    state = json.dumps({"name": name, "target": target, "timestamp": now}).encode()
    with connection.transaction():
        connection.execute(
            f"INSERT INTO {schema}.events (id, version, topic, state) "
            "VALUES (%s, %s, %s, %s)",
            (uuid.uuid5(uuid.NAMESPACE_URL, name), 1, "registered", state),
        )
        connection.execute(
            f"INSERT INTO {schema}.images VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (namespace, name) DO UPDATE SET target=excluded.target, "
            "updated_at=excluded.updated_at, version=excluded.version",
            ("default", name, json.dumps(target), "{}", now, now, 1),
        )


def run(url: str, count: int, rounds: int = 10) -> list[tuple[str, float, float]]:
    """Return [(case, imageledger rate, raw psycopg rate)]."""
    per_round = max(1, count // rounds)
    tag = uuid.uuid4().hex[:8]
    raw_schema, store_schema = f"bench_raw_{tag}", f"bench_store_{tag}"
    elapsed = {"raw": 0.0, "store": 0.0}
    admin = psycopg.connect(url, autocommit=True)
    try:
        admin.execute(f"CREATE SCHEMA {raw_schema}")
        admin.execute(
            f"CREATE TABLE {raw_schema}.events (id uuid, version bigint, topic text, "
            "state bytea, position bigserial, PRIMARY KEY (id, version))"
        )
        admin.execute(
            f"CREATE TABLE {raw_schema}.images (namespace text, name text, "
            "target text, labels text, created_at text, updated_at text, "
            "version bigint, PRIMARY KEY (namespace, name))"
        )
        with (
            psycopg.connect(url, autocommit=True) as raw,
            ImageStore.open(_with_schema(url, store_schema)) as store,
        ):
            for r in range(rounds):
                numbers = range(r * per_round, (r + 1) * per_round)
                started = time.perf_counter()
                for i in numbers:
                    _raw_register(raw, raw_schema, f"app/raw:{i}", _target(i))
                elapsed["raw"] += time.perf_counter() - started
                started = time.perf_counter()
                for i in numbers:
                    store.register(f"app/pg:{i}", _target(i))
                elapsed["store"] += time.perf_counter() - started
    finally:
        for schema in (raw_schema, store_schema):
            admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.close()
    done = per_round * rounds
    return [
        (
            "PostgreSQL register, view in the write's transaction",
            done / elapsed["store"],
            done / elapsed["raw"],
        )
    ]
