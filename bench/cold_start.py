"""Whole-process start-up: `imageledger get NAME` against `python3 -c pass`.

Both run as fresh processes, taking turns, so they see the same machine; the
rate is runs per second of the median run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imageledger import ImageStore

SCRIPT = Path(sys.executable).with_name("imageledger")


def run(runs: int) -> list[tuple[str, float, float]]:
    """Return the (case, imageledger rate, baseline rate) row."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cold.db"
        with ImageStore.open(path) as store:
            store.register(
                "app:prod",
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": "sha256:" + "ab" * 32,
                    "size": 1733,
                },
            )
        get = [str(SCRIPT), "--db", str(path), "get", "app:prod"]
        ours, baseline = [], []
        for _ in range(runs):
            ours.append(_timed(get))
            baseline.append(_timed([sys.executable, "-c", "pass"]))
    return [
        (
            "imageledger get, whole process (vs python -c pass)",
            1 / statistics.median(ours),
            1 / statistics.median(baseline),
        )
    ]


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started
