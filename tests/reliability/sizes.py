"""How much work the reliability suite does, and how to ask for more.

The defaults are the sizes the suite promises (4 processes x 2,000 operations,
50 crash rounds, ...) and keep it to a minute or two on a small machine.
IMAGELEDGER_RELIABILITY_SCALE multiplies every count, e.g. 10 for a long soak:

    IMAGELEDGER_RELIABILITY_SCALE=10 python -m pytest -m reliability
"""

from __future__ import annotations

import os


def scale() -> float:
    """The factor from IMAGELEDGER_RELIABILITY_SCALE (1 when unset)."""
    text = os.environ.get("IMAGELEDGER_RELIABILITY_SCALE", "").strip()
    if not text:
        return 1.0
    value = float(text)
    if not value > 0:
        raise ValueError(
            f"IMAGELEDGER_RELIABILITY_SCALE must be positive, not {text!r}"
        )
    return value


def scaled(count: int) -> int:
    """`count` times the scale, at least 1."""
    return max(1, round(count * scale()))


CONTENTION_PROCESSES = 4  # the processes stay four: the machine has few cores
CONTENTION_OPERATIONS = scaled(2_000)  # per process
CONTENTION_NAMES = 50
CRASH_ROUNDS = scaled(50)
GARBAGE_EXAMPLES = scaled(200)  # hypothesis examples per garbage test
