"""Run the benchmarks and print one table: case, imageledger, raw SQLite, ratio.

    python -m bench [--scale N] [--keep DIR] [--postgres URL]

Every case runs against imageledger and against a hand-written `sqlite3`
program doing the same logical work with the same durability, in the same
run, and is judged by the ratio (the machine is shared and noisy, so only
figures from one run are compared). `--scale N` is the number of images and
events of the big store (default 100,000, a run of a few minutes; 1,000,000
gives the sizes of the targets). The other sizes follow from it: N/100
durable single registers (at least 200, at most 2,000), batches of N/10
names (at most 10,000), N/5 lookups (at most 100,000), a name with N prior
events (at most 100,000), and a pathological regular expression in a filter
over N/10 images (at most 10,000) with 10,000-character values. The cold
start of `imageledger get` is a whole process against `python -c pass`.
`--postgres URL` adds durable registers on that PostgreSQL server against a
raw psycopg loop (bench/postgres.py), in a second table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import (
    big_store,
    cold_start,
    hash_chain,
    live_view,
    long_history,
    regex_filter,
)
from bench.table import Row, render


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=100_000,
        help="images and events in the big store (default 100,000)",
    )
    parser.add_argument(
        "--keep", type=Path, help="build the stores in this folder and keep them"
    )
    parser.add_argument(
        "--postgres", metavar="URL", help="also measure on this PostgreSQL server"
    )
    args = parser.parse_args()
    scale = max(1000, args.scale)
    started = time.perf_counter()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows, plans = _run(args.keep, scale)
    else:
        with tempfile.TemporaryDirectory(prefix="imageledger-bench-") as folder:
            rows, plans = _run(Path(folder), scale)
    render(rows)
    print(f"\nquery plans on the {scale:,}-event log:")
    for line in plans:
        print(f"  {line}")
    if args.postgres:
        # Imported here: the SQLite benchmarks run without the postgres extra.
        from bench import postgres

        _render_postgres(postgres.run(args.postgres, min(2000, max(200, scale // 100))))
    from importlib.util import find_spec  # bench/serve.py needs the serve extra

    if find_spec("uvicorn") is not None:
        from bench import serve

        print("\nimageledger serve (HTTP) against the same calls in-process:")
        render(
            serve.run(min(2000, max(200, scale // 100))),
            header=("case", "over HTTP", "in-process", "ratio", "target", "met"),
        )
    # follow containerd's lag under a burst: its own table (grpc only here).
    from bench import follow

    print("\nfollow containerd (bench/follow.py):")
    skipped = follow.missing()
    if skipped:
        print(f"  skipped: {skipped}")
    else:
        render(follow.run(), header=follow.HEADER)
    if find_spec("uvicorn") is not None and find_spec("jinja2") is not None:
        from bench import web  # the auditors' pages (the serve extra)

        print("\nthe auditors' timeline page against the library call it shows:")
        with tempfile.TemporaryDirectory(prefix="imageledger-bench-web-") as folder:
            render(
                web.run(Path(folder)),
                header=("case", "the page", "history()", "ratio", "target", "met"),
            )
    print(f"\n--scale {scale}: {time.perf_counter() - started:.0f} s")


def _render_postgres(rows: list[tuple[str, float, float]]) -> None:
    width = max(len(case) for case, _, _ in rows)
    print()
    print(
        f"{'case':<{width}}  {'imageledger/s':>13}  {'raw psycopg/s':>13}  {'ratio':>5}"
    )
    for case, rate, raw in rows:
        print(f"{case:<{width}}  {rate:>13,.0f}  {raw:>13,.0f}  {rate / raw:>5.2f}")


def _run(folder: Path, scale: int) -> tuple[list[Row], list[str]]:
    def step(what: str) -> None:
        print(f"... {what}", file=sys.stderr, flush=True)

    rows: list[Row] = []
    step("durable single registers")
    rows += live_view.run(folder, count=min(2000, max(200, scale // 100)))
    step("the hash chain's cost, and verify")
    rows += [
        Row(
            f"  (for comparison: {case})",
            f"{rate:,.0f}/s",
            f"{raw:,.0f}/s",
            rate / raw,
            "",
            None,
        )
        for case, rate, raw in hash_chain.run(min(2000, max(200, scale // 100)))
    ]
    step(f"building {scale:,} images in batches, and the raw file")
    path, raw_path, batch_rows = big_store.build(
        folder, scale, batch=min(10_000, scale // 10)
    )
    rows += batch_rows
    # Measured now: rebuild (ours and the raw one) leaves free pages behind.
    size_rows = big_store.sizes(path, raw_path, scale)
    step("get, history and where of random names and digests")
    rows += big_store.reads(path, scale, lookups=min(100_000, scale // 5))
    plans = big_store.plans(path)
    step("list, rebuild and verify, each in a child process")
    rows += big_store.streams(path, scale)
    step("a name with a long history")
    rows += long_history.run(
        folder, prior=min(100_000, scale), count=min(2000, max(200, scale // 100))
    )
    rows += size_rows
    images = min(10_000, scale // 10)
    step(f"a pathological regular expression over {images:,} images")
    rows += regex_filter.run(folder, images)
    step("cold starts of the command line")
    rows += cold_start.run(runs=21)
    return rows, plans


if __name__ == "__main__":
    main()
