"""One streaming job in a process of its own, so its peak memory is its own.

    python -m bench.child {list,rebuild,verify} {imageledger,raw} DB

Prints one JSON line: items done, seconds the job took (after the imports and
the open), and the process's peak resident set size in MB.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from bench import hash_chain, raw_sqlite


def _imageledger(job: str, db: Path) -> tuple[int, float]:
    from imageledger import ImageStore

    with ImageStore.open(db) as store:
        started = time.perf_counter()
        if job == "list":
            count = sum(1 for _ in store.list())
        elif job == "verify":
            count = store.verify().events
        else:
            count = store.rebuild()
        return count, time.perf_counter() - started


def _raw(job: str, db: Path) -> tuple[int, float]:
    if job == "verify":  # the raw scan: every event read and hashed, in order
        started = time.perf_counter()
        count, _ = hash_chain.stdlib_head(db)
        return count, time.perf_counter() - started
    connection = raw_sqlite.connect(db, create=False)
    try:
        started = time.perf_counter()
        if job == "list":
            count = raw_sqlite.list_all(connection)
        else:
            count = raw_sqlite.rebuild(connection)
        return count, time.perf_counter() - started
    finally:
        connection.close()


def main(argv: list[str]) -> None:
    job, side, db = argv[0], argv[1], Path(argv[2])
    if job not in ("list", "rebuild", "verify") or side not in ("imageledger", "raw"):
        raise SystemExit(__doc__)
    count, seconds = (_imageledger if side == "imageledger" else _raw)(job, db)
    print(json.dumps({"count": count, "seconds": seconds, "rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak resident set size since it started, in MB.

    VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec,
    so a child would report the size of the parent it was forked from.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main(sys.argv[1:])
