"""What the hash chain costs: single registers with and without it, and verify.

Writes: three loops of durable single registers of fresh names, taking turns
(see live_view.run): raw SQLite, imageledger as built (the event's link
computed and stored in its transaction), and the same store with the link
writer replaced by a no-op. Verify: `verify()` of the whole log against the
standard-library script of docs/integrity.md, which only recomputes the head.
"""

from __future__ import annotations

import hashlib
import sqlite3
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import raw_sqlite
from bench.live_view import target as _target
from imageledger import ImageStore
from imageledger.infrastructure import sqlite


def _no_links(*_: Any) -> None:
    return None


@contextmanager
def _chain_off() -> Iterator[None]:
    original = sqlite.append_links
    sqlite.append_links = _no_links
    try:
        yield
    finally:
        sqlite.append_links = original


def run(count: int, rounds: int = 10) -> list[tuple[str, float, float]]:
    """Return (case, imageledger rate, raw rate) rows."""
    per_round = max(1, count // rounds)
    elapsed = {"raw": 0.0, "chain": 0.0, "no chain": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        raw = raw_sqlite.connect(root / "raw.db")
        chained = ImageStore.open(root / "chain.db")
        unchained = ImageStore.open(root / "no-chain.db")

        def without_chain(i: int) -> None:
            with _chain_off():
                unchained.register(f"app/nochain:{i}", _target(i))

        steps: dict[str, Callable[[int], None]] = {
            "raw": lambda i: raw_sqlite.register(raw, f"app/raw:{i}", _target(i)),
            "chain": lambda i: chained.register(f"app/chain:{i}", _target(i)),
            "no chain": without_chain,
        }
        try:
            for r in range(rounds):
                for case, step in steps.items():
                    started = time.perf_counter()
                    for i in range(r * per_round, (r + 1) * per_round):
                        step(i)
                    elapsed[case] += time.perf_counter() - started
            verify_rows = _verify(chained, root / "chain.db")
        finally:
            raw.close()
            chained.close()
            unchained.close()
    done = per_round * rounds
    raw_rate = done / elapsed["raw"]
    return [
        ("register, with the hash chain", done / elapsed["chain"], raw_rate),
        ("register, without the hash chain", done / elapsed["no chain"], raw_rate),
        *verify_rows,
    ]


def _verify(store: ImageStore, path: Path) -> list[tuple[str, float, float]]:
    started = time.perf_counter()
    report = store.verify()
    rate = report.events / (time.perf_counter() - started)
    started = time.perf_counter()
    head = stdlib_head(path)
    raw_rate = report.events / (time.perf_counter() - started)
    assert head == (report.position, report.head)
    return [(f"verify, {report.events:,} events (events/s)", rate, raw_rate)]


def stdlib_head(path: Path) -> tuple[int, str]:
    """The chain script of docs/integrity.md: the head, by the standard library only."""
    connection = sqlite3.connect(path)
    head, position = bytes(32), 0
    rows = connection.execute(
        "SELECT rowid, originator_id, originator_version, topic, state"
        " FROM stored_events ORDER BY rowid"
    )
    for row in rows:
        position, stream, version, topic, state = row
        fields: Sequence[bytes] = [
            stream.encode(),
            str(version).encode(),
            topic.encode(),
            state,
        ]
        canonical = b"".join(struct.pack(">Q", len(f)) + f for f in fields)
        head = hashlib.sha256(head + canonical).digest()
    connection.close()
    return position, "sha256:" + head.hex()
