"""How the command line shows results: aligned tables for people, JSON for scripts.

Data goes to stdout, progress to stderr. The output is the same whether or not
stdout is a terminal, so what a person sees is what a script parsing the table
gets; `--json` is the stable form for scripts (OCI field names for descriptors).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from imageledger.projections.audit import AuditEntry
    from imageledger.projections.current_view import Image

LIST_COLUMNS = ("NAME", "DIGEST", "MEDIATYPE", "SIZE", "UPDATED")
GET_COLUMNS = (*LIST_COLUMNS, "VERSION", "IMMUTABLE", "LABELS")
HISTORY_COLUMNS = (
    "POSITION",
    "VERSION",
    "KIND",
    "DIGEST",
    "TIMESTAMP",
    "ACTOR",
    "REASON",
)
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(32), 127)} | {
    ord("\n"): "\\n",
    ord("\t"): "\\t",
    ord("\r"): "\\r",
}


def table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> Iterator[str]:
    """Lines of an aligned table: UPPERCASE headers, two spaces between columns.

    The rows are materialised to size the columns, so callers stream large
    results in `--json` or `-q` form instead.
    """
    cells = [[printable(cell) for cell in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [list(columns), *cells]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        yield "  ".join(padded).rstrip()


def image_row(image: Image, *, detailed: bool = False) -> list[str]:
    """One table row of an image (`get` adds version, immutability and labels)."""
    row = [
        image.name,
        image.target.digest,
        image.target.media_type,
        str(image.target.size),
        moment(image.updated_at),
    ]
    if detailed:
        labels = ",".join(f"{k}={v}" for k, v in sorted(image.labels.items()))
        row += [str(image.version), "yes" if image.immutable else "no", labels or "-"]
    return row


def history_row(entry: AuditEntry) -> list[str]:
    """One table row of an audit entry; its kind says `(immutable)` for a
    registration of an immutable name and `(forced)` for a forced delete."""
    kind: str = entry.kind
    if entry.forced:
        kind += " (forced)"
    elif entry.immutable:
        kind += " (immutable)"
    return [
        str(entry.position),
        str(entry.version),
        kind,
        entry.target.digest if entry.target is not None else "-",
        moment(entry.timestamp),
        entry.actor,
        entry.reason or "-",
    ]


def image_json(image: Image) -> dict[str, Any]:
    """An image as JSON: the descriptor in OCI form, times in RFC 3339 UTC."""
    return {
        "namespace": image.namespace,
        "name": image.name,
        "target": image.target.to_oci(),
        "labels": image.labels,
        "immutable": image.immutable,
        "createdAt": precise_moment(image.created_at),
        "updatedAt": precise_moment(image.updated_at),
        "version": image.version,
    }


def entry_json(entry: AuditEntry) -> dict[str, Any]:
    """An audit entry as JSON (target and labels are null for a delete).

    `immutable` is whether the name is immutable after the event; `forced`
    marks a delete that overrode it.
    """
    return {
        "position": entry.position,
        "namespace": entry.namespace,
        "name": entry.name,
        "version": entry.version,
        "kind": entry.kind,
        "target": entry.target.to_oci() if entry.target is not None else None,
        "labels": entry.labels,
        "immutable": entry.immutable,
        "forced": entry.forced,
        "timestamp": precise_moment(entry.timestamp),
        "actor": entry.actor,
        "reason": entry.reason,
    }


def document(value: Any) -> str:
    """A single result: one indented JSON document."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def json_line(value: Any) -> str:
    """One record of a stream: compact JSON on one line (JSON lines)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def moment(when: datetime) -> str:
    """A timestamp for people: RFC 3339 UTC to the second."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def precise_moment(when: datetime) -> str:
    """A timestamp for scripts: RFC 3339 UTC to the microsecond."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def progress(
    label: str, stream: TextIO | None = None
) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback drawing a bar on stderr, or None when stderr is not a
    terminal (piped or redirected output stays quiet)."""
    out = stream if stream is not None else sys.stderr
    if not out.isatty():
        yield None
        return
    drawn = False

    def draw(done: int, total: int) -> None:
        nonlocal drawn
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        out.write(f"\r{label} [{bar}] {fraction:4.0%}  {done:,}/{total:,} events")
        out.flush()
        drawn = True

    try:
        yield draw
    finally:
        if drawn:
            out.write("\n")
            out.flush()


def printable(text: str) -> str:
    """`text` with control characters escaped, safe to print on one line."""
    # A name or reason with a newline must not break a table's lines, and an
    # escape sequence in a name must not reach the terminal.
    return text.translate(_CONTROL)
