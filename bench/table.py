"""One row per case and the table they print as."""

from __future__ import annotations

from collections.abc import Callable
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


def render(
    rows: list[Row],
    printer: Callable[[str], None] = print,
    baseline: str = "raw sqlite",
) -> None:
    """Print `rows` as an aligned table; `baseline` heads the baseline's column."""
    header = ("case", "imageledger", baseline, "ratio", "target", "met")
    cells = [header] + [
        (
            r.case,
            r.value,
            r.baseline,
            f"{r.ratio:.2f}",
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
