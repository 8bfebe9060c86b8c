"""A pathological regular expression in a filter runs in linear time.

`(a+)+$` against a run of a's that ends in something else makes a
backtracking engine (Python's `re`) try every way to split the run: with 41
characters it runs for minutes. Filters use RE2, as containerd does through
Go, which reads each character once. Each image of the store carries a
10,000-character value ending in "!" (an annotation: a label is at most
4,096 bytes, containerd's rule), and `list` filters them all with that
pattern. The baseline reads the same rows of the same file with `sqlite3`,
decodes them with orjson and searches them with RE2 directly. For
comparison, the same list with a literal pattern, which any engine scans in
linear time: the pathological one costs about as much.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import orjson
import re2

from bench.live_view import target
from bench.table import Row
from imageledger import ImageStore

LENGTH = 10_000
VALUE = "a" * (LENGTH - 1) + "!"
PATTERN = "(a+)+$"
LITERAL = "b"


def build(folder: Path, images: int) -> Path:
    """A store of `images` names, each with the long annotation."""
    path = folder / "regex-filter.db"
    with ImageStore.open(path) as store:
        for start in range(0, images, 1000):
            store.register_many(
                [
                    (
                        f"registry.example/app{i}:1",
                        target(i) | {"annotations": {"x": VALUE}},
                    )
                    for i in range(start, min(images, start + 1000))
                ]
            )
    return path


def run(folder: Path, images: int, rounds: int = 3) -> list[Row]:
    path = build(folder, images)
    seconds = {"pathological": 0.0, "literal": 0.0, "raw": 0.0}
    with ImageStore.open(path) as store:
        for _ in range(rounds):
            for side, pattern in (("pathological", PATTERN), ("literal", LITERAL)):
                began = time.perf_counter()
                found = sum(1 for _ in store.list(f"annotations.x~={pattern}"))
                seconds[side] += time.perf_counter() - began
                assert found == 0, (side, found)
            began = time.perf_counter()
            assert _raw_list(path, PATTERN) == 0
            seconds["raw"] += time.perf_counter() - began
    rate = {side: rounds * images / spent for side, spent in seconds.items()}
    case = f"list, annotations.x~={PATTERN} on {LENGTH:,} characters, {images:,} images"
    return [
        Row(
            case,
            f"{rate['pathological']:,.0f}/s",
            f"{rate['raw']:,.0f}/s",
            rate["pathological"] / rate["raw"],
            "report",
            None,
        ),
        Row(
            f"  (for comparison: the same with ~={LITERAL}, a literal)",
            f"{rate['literal']:,.0f}/s",
            f"{rate['raw']:,.0f}/s",
            rate["literal"] / rate["raw"],
            "",
            None,
        ),
    ]


def _raw_list(path: Path, pattern: str) -> int:
    """The rows whose annotation x matches `pattern`, read and searched by hand."""
    options = re2.Options()
    options.log_errors = False
    compiled = re2.compile(pattern, options)
    connection = sqlite3.connect(path)
    try:
        found = 0
        for (row,) in connection.execute(
            "SELECT target FROM images WHERE namespace=? AND live=1 ORDER BY name",
            ("default",),
        ):
            annotations = orjson.loads(row).get("annotations") or {}
            if compiled.search(annotations.get("x", "")) is not None:
                found += 1
        return found
    finally:
        connection.close()
