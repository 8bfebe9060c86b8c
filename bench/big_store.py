"""A store of `images` names, one event each, and the cases that read or fold it.

Built through `register_many` in batches (the batch case), next to a raw file
built with executemany of the same rows, batch for batch in turns. Then:
`get`, `history` and `where` of random names and digests, `list` and `rebuild`
in child processes (for an honest peak RSS), and the bytes each event costs on
disk, and the query plans of `history` and `where`.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import raw_sqlite
from bench.live_view import target
from bench.table import Row, in_turns, rate_row, rounds_row
from imageledger import ImageStore
from imageledger.domain.image import image_id
from imageledger.infrastructure.sqlite import CARRYING, NEXT_ROW, SELECT_STREAM

RSS_LIMIT_MB = 150


def build(folder: Path, images: int, batch: int) -> tuple[Path, Path, list[Row]]:
    """Both files, and the batch case measured while building them."""
    ledger_path, raw_path = folder / "big.db", folder / "big-raw.db"
    elapsed = {"imageledger": 0.0, "raw": 0.0}
    raw = raw_sqlite.connect(raw_path)
    with ImageStore.open(ledger_path) as store:
        for start in range(0, images, batch):
            items = [
                (f"registry.example/team/app{i}:v1", target(i))
                for i in range(start, min(images, start + batch))
            ]
            began = time.perf_counter()
            store.register_many(items, actor="bench")
            elapsed["imageledger"] += time.perf_counter() - began
            began = time.perf_counter()
            raw_sqlite.register_batch(raw, items)
            elapsed["raw"] += time.perf_counter() - began
    raw.close()
    row = rate_row(
        f"batch register, {batch:,} per call",
        images / elapsed["imageledger"],
        images / elapsed["raw"],
        0.25,
    )
    return ledger_path, raw_path, [row]


def _name(i: int) -> str:
    return f"registry.example/team/app{i}:v1"


def reads(path: Path, images: int, lookups: int, rounds: int = 10) -> list[Row]:
    """`get`, `history` and `where` of random names and digests, against raw
    SELECTs, in turns (see `in_turns`)."""
    rng = random.Random(7)
    picked = [rng.randrange(images) for _ in range(lookups)]
    raw = sqlite3.connect(path)
    with ImageStore.open(path) as store:
        steps: dict[str, Callable[[int], object]] = {
            "get": lambda i: store.get(_name(i)),
            "raw get": lambda i: raw_sqlite.get(raw, _name(i)),
            "history": lambda i: store.history(_name(i)),
            "raw history": lambda i: raw_sqlite.history(raw, _name(i)),
            "where": lambda i: store.where(target(i)["digest"]),
            "raw where": lambda i: raw_sqlite.where(raw, target(i)["digest"]),
        }
        rates = in_turns(steps, picked, rounds)
    raw.close()
    ms = {case: 1000 / statistics.median(rate) for case, rate in rates.items()}
    return [
        rounds_row(
            f"get of a random name, {images:,} images",
            rates["get"],
            rates["raw get"],
            0.8,
        ),
        *(
            Row(
                f"{case} on a {images:,}-event log",
                f"{ms[key]:.3f} ms",
                f"{ms['raw ' + key]:.3f} ms",
                ms["raw " + key] / ms[key],
                "< 5 ms",
                ms[key] < 5,
            )
            for case, key in (("history(name)", "history"), ("where(digest)", "where"))
        ),
    ]


def plans(path: Path) -> list[str]:
    """SQLite's query plans of `history` and `where` on the big store: each a
    search of an index (never `SCAN`), whatever the log's size."""
    statements = {
        "history(name)": (SELECT_STREAM, (image_id("default", _name(1)).hex, 0)),
        "where(digest), the registrations": (CARRYING, (target(1)["digest"],)),
        "where(digest), each one's end": (NEXT_ROW, ("default", _name(1), 0)),
    }
    connection = sqlite3.connect(path)
    try:
        return [
            f"{case}: {row[3]}"
            for case, (statement, params) in statements.items()
            for row in connection.execute("EXPLAIN QUERY PLAN " + statement, params)
        ]
    finally:
        connection.close()


def _child(job: str, side: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.child", job, side, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def streams(path: Path, images: int, rounds: int = 3) -> list[Row]:
    """`list`, `rebuild` and `verify` of the whole store, each side in a child
    process.

    The sides take turns, `rounds` times: each row shows the median of the
    rounds' ratios and the lowest, which the target is judged by, with the
    largest peak RSS any child reached.
    """
    rows = []
    for job, what, at_least in (
        ("list", f"list of {images:,} images, streamed", 0.25),
        ("rebuild", f"rebuild of {images:,} events", 0.5),
        ("verify", f"verify of {images:,} events (the raw: hash only)", 0.3),
    ):
        rates: dict[str, list[float]] = {"imageledger": [], "raw": []}
        rss = {"imageledger": 0.0, "raw": 0.0}
        for _ in range(rounds):
            for side in rates:
                result = _child(job, side, path)
                assert result["count"] == images, (side, result)
                rates[side].append(images / result["seconds"])
                rss[side] = max(rss[side], result["rss_mb"])
        row = rounds_row(
            f"{what} (peak RSS {rss['imageledger']:.0f} MB; raw {rss['raw']:.0f})",
            rates["imageledger"],
            rates["raw"],
            at_least,
        )
        rows.append(
            dataclasses.replace(
                row,
                target=f"{row.target}, < {RSS_LIMIT_MB} MB",
                met=bool(row.met) and rss["imageledger"] < RSS_LIMIT_MB,
            )
        )
    return rows


def sizes(path: Path, raw_path: Path, events: int) -> list[Row]:
    """Bytes per event: the whole file, and the log's table with its index."""

    def measure(db: Path) -> tuple[float, float]:
        connection = sqlite3.connect(db)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = dict(
                connection.execute(
                    "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"
                ).fetchall()
            )
        finally:
            connection.close()
        log = sum(
            size
            for name, size in pages.items()
            if name in ("stored_events", "event_chain")  # events and their links
            or name.startswith("sqlite_autoindex_stored")
        )
        return db.stat().st_size / events, log / events

    (file_bytes, log_bytes), (raw_file, raw_log) = measure(path), measure(raw_path)
    return [
        Row(
            "database bytes per event (whole file)",
            f"{file_bytes:,.0f} B",
            f"{raw_file:,.0f} B",
            file_bytes / raw_file,
            "<= 2",
            file_bytes / raw_file <= 2,
        ),
        Row(
            "  of which the event log (events, their index and links)",
            f"{log_bytes:,.0f} B",
            f"{raw_log:,.0f} B",
            log_bytes / raw_log,
            "<= 2",
            log_bytes / raw_log <= 2,
        ),
    ]
