"""Log rows decoded in bulk (rebuild, verify) get exactly the event, or the
error, that decoding each row alone gives them."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import Notification
from hypothesis import given
from hypothesis import strategies as st

from conftest import MANIFEST, digest
from imageledger.domain.image import ImageName, image_id
from imageledger.errors import StoreError
from imageledger.infrastructure.mapper import LedgerMapper, LogRow, _image_id_bytes

NAME = "registry.example/team/app:1"
REGISTERED = "imageledger:Image.Registered"
DELETED = "imageledger:Image.Deleted"
TARGET = {"mediaType": MANIFEST, "digest": digest(1), "size": 7}


GONE = object()


def state(**changes: Any) -> dict[str, Any]:
    """A registration's stored state, with `changes` (GONE: the field removed)."""
    fields = {
        "actor": "ci",
        "labels": {},
        "name": NAME,
        "namespace": "default",
        "reason": None,
        "target": TARGET,
        "timestamp": "2026-11-28T21:31:21.052266+00:00",
    } | changes
    return {key: value for key, value in fields.items() if value is not GONE}


def row(
    fields: dict[str, Any] | bytes,
    *,
    topic: str = REGISTERED,
    stream: object = None,
    version: int = 1,
) -> LogRow:
    """A log row at position 9 holding `fields`, filed under the id of its
    name (or `stream`)."""
    if isinstance(fields, bytes):
        data, key = fields, ("default", NAME)
    else:
        data, key = orjson.dumps(fields), (fields["namespace"], fields["name"])
    return (9, image_id(*key).hex if stream is None else stream, version, topic, data)


DELETE = state(labels=GONE, target=GONE)

ROWS = {
    "a registration": row(state()),
    "with labels": row(state(labels={"team": "a", "tier": "web"})),
    "immutable": row(state(immutable=True)),
    "immutable stored false": row(state(immutable=False)),
    "with a reason": row(state(reason="release 1.2")),
    "a descriptor with optional fields": row(
        state(target=TARGET | {"annotations": {"a": "b"}, "urls": ["https://x/y"]})
    ),
    "a descriptor with an unknown field": row(state(target=TARGET | {"x-y": [1]})),
    "a delete": row(DELETE, topic=DELETED, version=2),
    "a forced delete": row(DELETE | {"forced": True}, topic=DELETED, version=2),
    "another time zone": row(state(timestamp="2026-11-28T23:31:21+02:00")),
    "an upper-case id": row(state(), stream=image_id("default", NAME).hex.upper()),
    "an unknown topic": row(state(), topic="os:system"),
    "not JSON": row(b"{nope"),
    "not an object": row(b"[1, 2]"),
    "a field missing": row(state(actor=GONE)),
    "a field too many": row(state(extra="x")),
    "a flag of the other kind": row(state(forced=True)),
    "a flag that is not true or false": row(state(immutable=1)),
    "a number for the actor": row(state(actor=5)),
    "an empty actor": row(state(actor="")),
    "a name that is not a reference": row(state(name="Not A/Name")),
    "a namespace that is not one": row(state(namespace="a//b")),
    "an empty reason": row(state(reason="")),
    "labels of numbers": row(state(labels={"a": 1})),
    "a label with an empty key": row(state(labels={"": "x"})),
    "a time without offset": row(state(timestamp="2026-11-28T21:31:21")),
    "a time that is not text": row(state(timestamp=1)),
    "a descriptor without size": row(state(target={"mediaType": MANIFEST})),
    "a descriptor with a bad digest": row(state(target=TARGET | {"digest": "x"})),
    "the id of another name": row(state(), stream=image_id("default", "b:1").hex),
    "an id that is not one": row(state(), stream="nonsense"),
    "an id of another type": row(state(), stream=12),
}


def one_by_one(mapper: LedgerMapper, *, checked: bool) -> Callable[[LogRow], Any]:
    """How a row is decoded alone: the mapper's own method on the row."""
    decode = mapper.to_checked_event if checked else mapper.to_domain_event

    def one(log_row: LogRow) -> ImageName.Event:
        position, stream, version, topic, data = log_row
        return decode(
            Notification(
                id=position,
                originator_id=stream,
                originator_version=version,
                topic=topic,
                state=data,
            )
        )

    return one


def outcome(decode: Callable[[], Any]) -> object:
    try:
        return decode()
    except Exception as e:  # the error is the outcome being compared
        return (type(e), str(e))


@pytest.mark.parametrize("checked", [False, True], ids=["rebuild", "verify"])
@pytest.mark.parametrize("case", ROWS)
def test_a_row_decoded_in_bulk_is_decoded_as_alone(case: str, checked: bool) -> None:
    mapper = LedgerMapper()
    one = one_by_one(mapper, checked=checked)
    log_row = ROWS[case]
    alone = outcome(lambda: one(log_row))
    in_bulk = outcome(lambda: mapper.decode_rows([log_row], one, checked=checked))
    expected = alone if isinstance(alone, tuple) else [(9, alone)]
    assert in_bulk == expected


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("an empty actor", "actor: must not be empty"),
        ("a name that is not a reference", "name: "),
        ("a time without offset", "is not UTC"),
        ("another time zone", "is not UTC"),
        ("the id of another name", "not that of its name"),
        ("an id that is not one", "badly formed hexadecimal UUID"),
    ],
)
def test_verify_refuses_in_bulk_what_it_refuses_alone(case: str, problem: str) -> None:
    mapper = LedgerMapper()
    one = one_by_one(mapper, checked=True)
    with pytest.raises(StoreError, match=re.escape(problem)):
        mapper.decode_rows([ROWS["a registration"], ROWS[case]], one, checked=True)


def test_intact_rows_are_decoded_without_the_one_by_one_path() -> None:
    mapper = LedgerMapper()
    alone = one_by_one(mapper, checked=True)
    asked: list[LogRow] = []

    def one(log_row: LogRow) -> ImageName.Event:
        asked.append(log_row)
        return alone(log_row)

    cases = ("a registration", "with labels", "immutable", "a forced delete")
    rows = [ROWS[case] for case in cases]
    decoded = mapper.decode_rows(rows, one, checked=True)
    assert asked == []
    assert decoded == [(9, alone(log_row)) for log_row in rows]


@given(
    st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True),
    st.text(min_size=1, max_size=60),
)
def test_the_bulk_id_check_computes_image_id(namespace: str, name: str) -> None:
    assert _image_id_bytes(namespace, name) == image_id(namespace, name).bytes
