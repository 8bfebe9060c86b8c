"""`get` of random names against a primary-key SELECT of the same view row."""

from __future__ import annotations

import random
import sqlite3
import tempfile
import time
from pathlib import Path

from imageledger import ImageStore


def run(images: int, lookups: int) -> list[tuple[str, float, float]]:
    """Return (case, imageledger rate, raw rate) rows."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reads.db"
        with ImageStore.open(path) as store:
            for i in range(images):
                target = {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{i:064x}",
                    "size": i,
                }
                store.register(f"app/n{i}:v1", target)
        names = [f"app/n{rng.randrange(images)}:v1" for _ in range(lookups)]

        with ImageStore.open(path) as store:
            started = time.perf_counter()
            for name in names:
                store.get(name)
            rate = lookups / (time.perf_counter() - started)

        raw = sqlite3.connect(path)
        started = time.perf_counter()
        for name in names:
            raw.execute(
                "SELECT target, labels, created_at, updated_at, version FROM images "
                "WHERE namespace=? AND name=? AND live=1",
                ("default", name),
            ).fetchone()
        raw_rate = lookups / (time.perf_counter() - started)
        raw.close()
    return [(f"get of a random name, {images:,} images", rate, raw_rate)]
