"""A current-view row and the fold state it holds, both ways.

A row is the columns namespace, name, target, labels, created_at, updated_at,
version, live and immutable, in that order (plus digest and media_type when
written):
JSON text for target and labels, RFC 3339 text for the times, so that the
rows are plain and equal on every backend.
"""

from __future__ import annotations

from typing import Any

import orjson

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.trusted import unvalidated
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.mapper import stored_time
from imageledger.projections.current_view import CurrentImage, Image

READ_COLUMNS = (
    "namespace, name, target, labels, created_at, updated_at, version, live, immutable"
)
"""The columns a row is read with, in the order `state_from_row` expects."""

VIEW_READ_COLUMNS = ", ".join(f"v.{column}" for column in READ_COLUMNS.split(", "))
"""READ_COLUMNS of the view's table named `v` in a join."""


ALL_COLUMNS = (
    "namespace",
    "name",
    "digest",
    "media_type",
    "target",
    "labels",
    "created_at",
    "updated_at",
    "version",
    "live",
    "immutable",  # schema 3 (SQLite), 2 (PostgreSQL): write-once names
)
"""Every column of a view row, in the order `row_params` writes them."""


def row_params(state: CurrentImage) -> tuple[Any, ...]:
    """The columns of a view row for `state`, in the upsert's order."""
    image = state.image
    created_at = image.created_at.isoformat()
    return (
        image.namespace,
        image.name,
        image.target.digest,
        image.target.media_type,
        orjson.dumps(image.target.to_oci()).decode(),
        # Sorted, as in the log, so that the view and the fold write equal text.
        orjson.dumps(image.labels, option=orjson.OPT_SORT_KEYS).decode()
        if image.labels
        else "{}",
        created_at,
        created_at
        if image.updated_at is image.created_at
        else image.updated_at.isoformat(),
        image.version,
        int(state.live),
        int(image.immutable),
    )


def read_state(row: Any) -> CurrentImage | StoreError:
    """`state_from_row`, with a damaged row's error returned, not raised."""
    try:
        return state_from_row(row)
    except StoreError as e:
        return e


def state_from_row(row: Any) -> CurrentImage:
    """A view row (the columns of `_COLUMNS`, in order) as fold state."""
    return CurrentImage(image=image_from_row(row), live=bool(row[7]))


def image_from_row(row: Any) -> Image:
    """The image a view row holds; StoreError if the row is damaged."""
    try:
        return _trusted_image(row)
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise StoreError(
            f"the current view's row of {row[1]!r} in namespace {row[0]!r} is "
            f"damaged ({type(e).__name__}: {e}); rebuild() refolds it from the log"
        ) from e


def _trusted_image(row: Any) -> Image:
    # Rows were written from validated events: rebuild them without validating
    # (a damaged row still fails to decode, which _image reports).
    # A name's first registration has equal times and many have no labels:
    # those skip a parse each (a list does this a million times).
    created_at = stored_time(row[4])
    return unvalidated(
        Image,
        {
            "namespace": row[0],
            "name": row[1],
            "target": Descriptor.from_stored(orjson.loads(row[2])),
            "labels": {} if row[3] == "{}" else orjson.loads(row[3]),
            "created_at": created_at,
            "updated_at": created_at if row[5] == row[4] else stored_time(row[5]),
            "version": row[6],
            "immutable": bool(row[8]),
        },
        set(_IMAGE_FIELDS),  # none of them is ever None
    )


_IMAGE_FIELDS = frozenset(Image.model_fields)


def same_column(column: str, viewed: object, folded: object) -> bool:
    """Whether a view column holds what the fold gives (JSON compared as JSON,
    so rows written with another key order still match)."""
    if viewed == folded:
        return True
    if column in ("target", "labels") and isinstance(viewed, str):
        try:
            return bool(orjson.loads(viewed) == orjson.loads(str(folded)))
        except orjson.JSONDecodeError:
            return False
    return False


def shown_value(value: object) -> str:
    """A column's value as a verify message shows it, at most 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
