"""Durable single registers: the view in the write's transaction, or caught up after.

Three loops of durable single registers of fresh names, in one run:
- raw: the hand-written SQLite transaction (event row + view row);
- in-transaction: imageledger as built, the view folded in the event's transaction;
- catch-up: the same store with the live view detached, caught up after each
  write in a transaction of its own (what a subscription-less runner would do).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import raw_sqlite
from bench.table import Row, rate_row
from imageledger import ImageStore


def target(i: int) -> dict[str, Any]:
    """The descriptor of the i-th image of a run."""
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{i:064x}",
        "size": 1000 + i,
    }


def run(folder: Path, count: int, rounds: int = 10) -> list[Row]:
    """The loops take turns, `rounds` times, so that all of them see the same
    disk: fsync times on a shared machine drift by a factor of two in a minute.
    """
    per_round = max(1, count // rounds)
    elapsed = {"raw": 0.0, "live": 0.0, "catch-up": 0.0}
    raw = raw_sqlite.connect(folder / "raw-single.db")
    live = ImageStore.open(folder / "in-transaction.db")
    detached = ImageStore.open(folder / "catch-up.db")
    view = detached._log.current_view
    detached._log._factory.recorder.live_views.remove(view)

    def register_then_catch_up(i: int) -> None:
        detached.register(f"app/catchup:{i}", target(i))
        view.catch_up()

    steps: dict[str, Callable[[int], None]] = {
        "raw": lambda i: raw_sqlite.register(raw, f"app/raw:{i}", target(i)),
        "live": lambda i: live.register(f"app/live:{i}", target(i)),
        "catch-up": register_then_catch_up,
    }
    try:
        for r in range(rounds):
            for case, step in steps.items():
                started = time.perf_counter()
                for i in range(r * per_round, (r + 1) * per_round):
                    step(i)
                elapsed[case] += time.perf_counter() - started
    finally:
        raw.close()
        live.close()
        detached.close()
    done = per_round * rounds
    raw_rate = done / elapsed["raw"]
    catch_up = done / elapsed["catch-up"]
    return [
        rate_row(
            "durable register, view in the write's transaction",
            done / elapsed["live"],
            raw_rate,
            0.5,
        ),
        Row(
            "  (for comparison: view caught up after the write)",
            f"{catch_up:,.0f}/s",
            f"{raw_rate:,.0f}/s",
            catch_up / raw_rate,
            "",
            None,
        ),
    ]
