"""What both backends' audit indexes share: the fold as storage sees it, the
description of a row that differs, and the WHERE clauses of the queries."""

from __future__ import annotations

from typing import Any

from imageledger.domain.image import ImageName
from imageledger.infrastructure.errors import StoreError
from imageledger.projections.audit import AuditRow, Bound, LogQuery, audit_fold, micros

COLUMNS = (
    "position, namespace, name, version, kind, digest, timestamp, actor, since, "
    "immutable"
)
"""The columns of an index row, in `AuditRow`'s order."""

LAST = 2**63 - 1


def fold_row(
    previous: AuditRow | None, position: int, event: ImageName.Event
) -> AuditRow:
    """`audit_fold`, with a log that cannot be folded as a StoreError."""
    try:
        return audit_fold(previous, position, event)
    except (ValueError, TypeError) as e:  # a damaged or forged log
        raise StoreError(f"the log cannot be folded: {e}") from e


def difference(found: AuditRow | None, expected: AuditRow) -> str:
    """What verify says about an index row that is not the fold of its event."""
    if found is None:
        return "the event is missing from the audit index"
    return "; ".join(
        f"{field} is {getattr(found, field)!r} in the audit index, "
        f"{getattr(expected, field)!r} in the log"
        for field in AuditRow._fields
        if getattr(found, field) != getattr(expected, field)
    )


def until_condition(bound: Bound, mark: str) -> tuple[str, list[Any]]:
    """The condition of rows at or before `bound` (`mark`: the placeholder)."""
    if bound.moment is not None:
        return f"timestamp <= {mark}", [micros(bound.moment)]
    return f"position <= {mark}", [LAST if bound.position is None else bound.position]


def log_conditions(query: LogQuery, mark: str) -> tuple[list[str], list[Any]]:
    """The conditions of `query` on the index aliased `a`, and their parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("a.namespace", query.namespace),
        ("a.name", query.name),
        ("a.digest", query.digest),
        ("a.kind", query.kind),
        ("a.actor", query.actor),
    ):
        if value is not None:
            conditions.append(f"{column} = {mark}")
            params.append(value)
    if query.after is not None:
        conditions.append(f"a.position > {mark}")
        params.append(query.after)
    for bound, operator in ((query.since, ">="), (query.until, "<=")):
        if bound.position is not None:
            conditions.append(f"a.position {operator} {mark}")
            params.append(bound.position)
        if bound.moment is not None:
            conditions.append(f"a.timestamp {operator} {mark}")
            params.append(micros(bound.moment))
    return conditions, params
