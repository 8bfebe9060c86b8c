"""The views' tables and rows as stored, read without eventsourcing or pydantic.

Both backends name their tables and columns as here. A current-view row is
the columns of `READ_COLUMNS`, in order: JSON text for the target and the
labels, RFC 3339 text for the times, so that rows are plain and equal on
every backend. `image_fields` is the one decoding of such a row; the store
wraps its fields into an `Image`, the command line prints them as they are
(the row was validated when its event was written).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from imageledger.infrastructure.errors import StoreError
from imageledger.projections.audit_rows import AuditRow

# The tables, the same on both backends.
EVENTS_TABLE = "stored_events"  # eventsourcing's
TRACKING_TABLE = "tracking"  # eventsourcing's: one row per view
CHAIN_TABLE = "event_chain"
IMAGES_TABLE = "images"
IMAGES_SHADOW_TABLE = "images_rebuild"
AUDIT_TABLE = "audit_index"
AUDIT_SHADOW_TABLE = "audit_index_rebuild"
DIGEST_INDEX = "images_digest"  # the current view by (namespace, digest)

# The views' names in the tracking table.
CURRENT_VIEW = "current_view"
AUDIT_VIEW = "audit_index"

AUDIT_COLUMNS = (
    "position, namespace, name, version, kind, digest, timestamp, actor, since, "
    "immutable"
)
"""The columns of an audit-index row, in `AuditRow`'s order."""

READ_COLUMNS = (
    "namespace, name, target, labels, created_at, updated_at, version, live, immutable"
)
"""The columns a row is read with, in the order `image_fields` expects."""


def stored_time(value: object) -> datetime:
    """A stored time, in UTC (a history imported before times had to be UTC
    may hold another offset); ValueError if it has none or UTC cannot hold it."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    moment = datetime.fromisoformat(value)
    if moment.utcoffset() is None:
        raise ValueError(f"the timestamp {value!r} has no offset")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"the timestamp {value!r} is out of range in UTC") from None


def image_fields(row: Sequence[Any]) -> dict[str, Any]:
    """The fields of the image a view row holds, by `Image`'s field names,
    with the target as its OCI JSON object; raises what decoding a damaged
    row raises (see `damaged`)."""
    # A name's first registration has equal times and many have no labels:
    # those skip a parse each (a list does this a million times).
    created_at = stored_time(row[4])
    return {
        "namespace": row[0],
        "name": row[1],
        "target": orjson.loads(row[2]),
        "labels": {} if row[3] == "{}" else orjson.loads(row[3]),
        "created_at": created_at,
        "updated_at": created_at if row[5] == row[4] else stored_time(row[5]),
        "version": row[6],
        "immutable": bool(row[8]),
    }


DECODING_ERRORS = (ValueError, TypeError, KeyError, AttributeError)
"""What decoding a damaged row raises (orjson's error is a ValueError)."""


def damaged(row: Sequence[Any], error: Exception) -> StoreError:
    """The error of a view row that cannot be decoded."""
    return StoreError(
        f"the current view's row of {row[1]!r} in namespace {row[0]!r} is "
        f"damaged ({type(error).__name__}: {error}); rebuild() refolds it from the log"
    )


def audit_row(row: Any) -> AuditRow:
    """An audit-index row (AUDIT_COLUMNS, in order) as an AuditRow."""
    position, namespace, name, version, kind, digest, timestamp, actor, since = row[:9]
    return AuditRow(
        position,
        namespace,
        name,
        version,
        kind,
        digest,
        timestamp,
        actor,
        since,
        bool(row[9]),
    )
