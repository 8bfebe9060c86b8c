"""Run the benchmarks and print one table: case, imageledger rate, raw rate, ratio.

    python -m bench [--scale N] [--postgres URL]

`--scale` multiplies the sizes (default 1: a run of well under a minute:
1,000 registers per write case; 5,000 images and 20,000 lookups for reads;
verify of the 1,000 events the chain case wrote).
`--postgres URL` adds durable registers on that PostgreSQL server against a raw
psycopg loop (bench/postgres.py), in a second table.
"""

from __future__ import annotations

import argparse

from bench import hash_chain, live_view, reads


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="size multiplier")
    parser.add_argument(
        "--postgres", metavar="URL", help="also measure on this PostgreSQL server"
    )
    args = parser.parse_args()
    count = max(10, int(1000 * args.scale))
    rows = [
        *live_view.run(count),
        *hash_chain.run(count),
        *reads.run(images=5 * count, lookups=20 * count),
    ]
    width = max(len(case) for case, _, _ in rows)
    print(
        f"{'case':<{width}}  {'imageledger/s':>13}  {'raw sqlite/s':>12}  {'ratio':>5}"
    )
    for case, rate, raw in rows:
        print(f"{case:<{width}}  {rate:>13,.0f}  {raw:>12,.0f}  {rate / raw:>5.2f}")
    if args.postgres:
        # Imported here: the SQLite benchmarks run without the postgres extra.
        from bench import postgres

        pg_rows = postgres.run(args.postgres, count)
        width = max(len(case) for case, _, _ in pg_rows)
        print()
        print(
            f"{'case':<{width}}  {'imageledger/s':>13}  {'raw psycopg/s':>13}  "
            f"{'ratio':>5}"
        )
        for case, rate, raw in pg_rows:
            print(f"{case:<{width}}  {rate:>13,.0f}  {raw:>13,.0f}  {rate / raw:>5.2f}")


if __name__ == "__main__":
    main()
