"""A write's cost must not grow with the name's history.

One name is given `prior` events (through batches), then durable single
registers of that name take turns with durable single registers of fresh
names in the same store. Loading an image reads its view row as the
snapshot, so both should cost the same.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.live_view import target
from bench.table import Row, rate_row
from imageledger import ImageStore

NAME = "registry.example/team/busy:latest"


def run(folder: Path, prior: int, count: int, rounds: int = 10) -> list[Row]:
    per_round = max(1, count // rounds)
    elapsed = {"long": 0.0, "fresh": 0.0}
    with ImageStore.open(folder / "long-history.db") as store:
        batch = 10_000
        for start in range(0, prior, batch):
            store.register_many(
                [(NAME, target(i)) for i in range(start, min(prior, start + batch))]
            )
        assert store.get(NAME).version == prior
        for r in range(rounds):
            began = time.perf_counter()
            for i in range(r * per_round, (r + 1) * per_round):
                store.register(NAME, target(prior + i))
            elapsed["long"] += time.perf_counter() - began
            began = time.perf_counter()
            for i in range(r * per_round, (r + 1) * per_round):
                store.register(f"registry.example/team/fresh{i}:v1", target(i))
            elapsed["fresh"] += time.perf_counter() - began
    done = per_round * rounds
    return [
        rate_row(
            f"register of a name with {prior:,} events (baseline: a fresh name)",
            done / elapsed["long"],
            done / elapsed["fresh"],
            0.5,
        )
    ]
