"""Durable single registers: the view in the write's transaction, or caught up after.

Three loops of durable single registers of fresh names, in one run:
- raw: the hand-written SQLite transaction (event row + view row);
- in-transaction: imageledger as built, the view folded in the event's transaction;
- catch-up: the same store with the live view detached, caught up after each
  write in a transaction of its own (what a subscription-less runner would do).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench import raw_sqlite
from bench.table import Row, in_turns, rounds_row
from imageledger import ImageStore


def target(i: int) -> dict[str, Any]:
    """The descriptor of the i-th image of a run."""
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{i:064x}",
        "size": 1000 + i,
    }


def run(folder: Path, count: int, rounds: int = 10) -> list[Row]:
    """The loops take turns, `rounds` times (see `in_turns`)."""
    raw = raw_sqlite.connect(folder / "raw-single.db")
    live = ImageStore.open(folder / "in-transaction.db")
    detached = ImageStore.open(folder / "catch-up.db")
    view = detached._log.current_view
    detached._log._factory.recorder.live_views.remove(view)

    def register_then_catch_up(i: int) -> None:
        detached.register(f"app/catchup:{i}", target(i))
        view.catch_up()

    steps: dict[str, Callable[[int], object]] = {
        "raw": lambda i: raw_sqlite.register(raw, f"app/raw:{i}", target(i)),
        "live": lambda i: live.register(f"app/live:{i}", target(i)),
        "catch-up": register_then_catch_up,
    }
    try:
        rates = in_turns(steps, range(count), rounds)
    finally:
        raw.close()
        live.close()
        detached.close()
    return [
        rounds_row(
            "durable register, view in the write's transaction",
            rates["live"],
            rates["raw"],
            0.5,
        ),
        replace(
            rounds_row(
                "  (for comparison: view caught up after the write)",
                rates["catch-up"],
                rates["raw"],
                0,
            ),
            target="",
            met=None,
        ),
    ]
