"""One row per case and the table they print as.

`ratio` is imageledger's figure over the baseline's; for a case run in
rounds (`rounds_row`) it is the median of the rounds' ratios and `min` the
lowest, which is the one a target is judged by.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One case: imageledger's figure, the baseline's, and the target.

    `ratio` is what the target is about (imageledger over baseline for
    rates, the other way round for costs); `met` says whether it holds.
    """

    case: str
    value: str
    baseline: str
    ratio: float
    target: str
    met: bool | None  # None: shown for comparison, no target
    least: float | None = None
    """The lowest ratio of any round, for a case run in rounds (`ratio` is
    then their median); a target is met only when every round meets it."""


def rate_row(case: str, rate: float, baseline: float, at_least: float) -> Row:
    """A throughput case: imageledger's rate over the baseline's, >= `at_least`."""
    ratio = rate / baseline
    return Row(
        case,
        f"{rate:,.0f}/s",
        f"{baseline:,.0f}/s",
        ratio,
        f">= {at_least}",
        ratio >= at_least,
    )


def rounds_row(
    case: str, rates: Sequence[float], baselines: Sequence[float], at_least: float
) -> Row:
    """A throughput case run in rounds, imageledger and the baseline in turns:
    the ratio of each round, their median shown and the lowest judged."""
    ratios = [rate / baseline for rate, baseline in zip(rates, baselines, strict=True)]
    return Row(
        case,
        f"{statistics.median(rates):,.0f}/s",
        f"{statistics.median(baselines):,.0f}/s",
        statistics.median(ratios),
        f">= {at_least}",
        min(ratios) >= at_least,
        min(ratios),
    )


def in_turns(
    steps: dict[str, Callable[[int], object]], items: Sequence[int], rounds: int
) -> dict[str, list[float]]:
    """Run every step over the same share of `items`, in turns, `rounds`
    times; return each step's rate (items per second) in each round.

    Turns, not one long run each: fsync times and the load of a shared
    machine drift by a factor of two within a minute, and every round sees
    all the steps under the same conditions.
    """
    per_round = max(1, len(items) // rounds)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        chunk = items[r * per_round : (r + 1) * per_round]
        for name, step in steps.items():
            began = time.perf_counter()
            for item in chunk:
                step(item)
            rates[name].append(len(chunk) / (time.perf_counter() - began))
    return rates


def render(rows: list[Row], printer: Callable[[str], None] = print) -> None:
    """Print `rows` as an aligned table."""
    header = ("case", "imageledger", "raw sqlite", "ratio", "min", "target", "met")
    cells = [header] + [
        (
            r.case,
            r.value,
            r.baseline,
            f"{r.ratio:.2f}",
            "-" if r.least is None else f"{r.least:.2f}",
            r.target,
            _met(r.met),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    for line in cells:
        printer(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            ).rstrip()
        )


def _met(met: bool | None) -> str:
    return "-" if met is None else "yes" if met else "NO"
