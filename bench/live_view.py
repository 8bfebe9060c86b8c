"""Where to keep the current view current: in the write, or caught up after it.

Three loops of durable single registers of fresh names, in one run:
- raw: the hand-written SQLite transaction (event row + view row);
- in-transaction: imageledger as built, the view folded in the event's transaction;
- catch-up: the same store with the live view detached, caught up after each
  write in a transaction of its own (what a subscription-less runner would do).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import raw_sqlite
from imageledger import ImageStore


def _target(i: int) -> dict[str, object]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{i:064x}",
        "size": 1000 + i,
    }


def _rate(count: int, step: Callable[[int], None]) -> float:
    started = time.perf_counter()
    for i in range(count):
        step(i)
    return count / (time.perf_counter() - started)


def run(count: int) -> list[tuple[str, float, float]]:
    """Return (case, imageledger rate, raw rate) rows."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        raw = raw_sqlite.connect(root / "raw.db")
        raw_rate = _rate(
            count, lambda i: raw_sqlite.register(raw, f"app/raw:{i}", _target(i))
        )
        raw.close()

        with ImageStore.open(root / "in-transaction.db") as store:
            live_rate = _rate(
                count, lambda i: store.register(f"app/live:{i}", _target(i))
            )

        with ImageStore.open(root / "catch-up.db") as store:
            view = store._log.current_view
            recorder = store._log._factory.recorder
            recorder.live_views.remove(view)

            def register_then_catch_up(i: int) -> None:
                store.register(f"app/catchup:{i}", _target(i))
                view.catch_up()

            catch_up_rate = _rate(count, register_then_catch_up)
    return [
        ("register, view in the write's transaction", live_rate, raw_rate),
        ("register, view caught up after the write", catch_up_rate, raw_rate),
    ]
