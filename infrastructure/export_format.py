"""The history file: the whole log as JSON lines, one event a line.

Each line is one JSON object with its keys in this order:

    position, namespace, name, version, kind, target, labels, timestamp,
    actor, reason, [fields added to an event class later], chain

`kind` is `registered` or `deleted`; `target` is the descriptor in OCI JSON
and `labels` an object (both null for a delete); `timestamp` is RFC 3339 with
microseconds, `Z` for UTC; `reason` may be null; `chain` is the event's stored
link in the hash chain, `sha256:` and 64 hex digits, when the log has one.

A field an event class gains later (a flag on Registered, say) is written after
`reason` when its value differs from the field's default, and read back into
the event, so that the format follows the events without a change here: see
`extra_fields`.

This module turns one event into one line and one line into one event; the
rules that span lines (order, versions, a delete of a live name) are the
importer's.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import InvalidArgument
from imageledger.domain.image import ImageName, image_id
from imageledger.domain.labels import validate_actor, validate_labels, validate_reason
from imageledger.domain.names import validate_name, validate_namespace
from imageledger.infrastructure.hash_chain import HEAD_PREFIX

KINDS: dict[str, type[ImageName.Event]] = {
    "registered": ImageName.Registered,
    "deleted": ImageName.Deleted,
}
KEYS = (
    "position",
    "namespace",
    "name",
    "version",
    "kind",
    "target",
    "labels",
    "timestamp",
    "actor",
    "reason",
)
CHAIN = "chain"
# What eventsourcing gives every event, and the fields of ours written above.
_KNOWN_FIELDS = frozenset(
    ("originator_id", "originator_version", "timestamp", *KEYS, "target", "labels")
)
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})", re.ASCII
)
_CHAIN = re.compile(re.escape(HEAD_PREFIX) + "[0-9a-f]{64}", re.ASCII)

# The longest line an import reads, newline excluded. The largest legal event
# is under 8 MiB: 256 labels of 4,096 bytes (1 MiB), a descriptor of at most
# 256 KiB, a reason of 4,096 characters, and JSON may write each byte of
# text as a six-byte \u escape. Twice that leaves room for fields added later.
MAX_LINE_BYTES = 16 * 1024 * 1024


def extra_fields(kind: type[ImageName.Event]) -> dict[str, dataclasses.Field[Any]]:
    """The fields of an event class beyond those the format names (flags added
    to an event later): written when not at their default, read back as given."""
    return {
        field.name: field
        for field in dataclasses.fields(kind)
        if field.name not in _KNOWN_FIELDS
    }


def encode_line(position: int, event: ImageName.Event, link: bytes | None) -> bytes:
    """One line of the history file (with its newline) for `event` at `position`."""
    registered = event if isinstance(event, ImageName.Registered) else None
    record: dict[str, Any] = {
        "position": position,
        "namespace": event.namespace,
        "name": event.name,
        "version": event.originator_version,
        "kind": "deleted" if registered is None else "registered",
        "target": None if registered is None else registered.target.to_oci(),
        "labels": None if registered is None else dict(registered.labels),
        "timestamp": timestamp_text(event.timestamp),
        "actor": event.actor,
        "reason": event.reason,
    }
    for name, field in extra_fields(type(event)).items():
        value = getattr(event, name, field.default)
        if value != field.default:
            record[name] = value
    if link is not None:
        record[CHAIN] = HEAD_PREFIX + link.hex()
    return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)


def timestamp_text(when: datetime) -> str:
    """RFC 3339 with microseconds; `Z` for UTC, any other offset kept as it is."""
    if when.utcoffset() is None:  # not written by imageledger; read as UTC
        when = when.replace(tzinfo=UTC)
    text = when.isoformat(timespec="microseconds")
    return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text


@dataclasses.dataclass(frozen=True)
class HistoryLine:
    """One line read back: the event it describes, where, and its chain link."""

    number: int
    position: int
    event: ImageName.Event
    chain: bytes | None


def capped_lines(file: IO[Any], max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(number, line) for each line of `file` (binary or text), counted from 1.

    A line longer than `max_bytes` (newline excluded) raises InvalidArgument
    naming it as soon as the cap is passed: no more than `max_bytes` + 1 of it
    is ever read into memory.
    """
    text = isinstance(file, io.TextIOBase)
    number = 0
    while True:
        number += 1
        piece = file.readline(max_bytes + 1)
        if not piece:
            return
        line: bytes = piece.encode() if text else piece
        length = len(line) - line.endswith(b"\n")
        if length > max_bytes:
            raise InvalidArgument(
                f"line {number}",
                f"is longer than {max_bytes:,} bytes, the longest line an import "
                "reads (raise it with max_line_bytes, --max-line-bytes)",
            )
        yield number, line


def validate_max_line_bytes(value: object) -> int:
    """An import's line cap, checked: a whole number of bytes, 1 KiB to 1 GiB."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 1024 <= value <= 1024**3
    ):
        raise InvalidArgument(
            "max_line_bytes", "must be a number of bytes from 1024 to 1073741824"
        )
    return value


def decode_line(number: int, line: bytes | str) -> HistoryLine:
    """The event of line `number` of a history file, validated field by field.

    Raises InvalidArgument naming the line and the field: `line 3: target.digest`.
    """
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(
            f"line {number}", f"is not JSON (an error at column {e.colno})"
        ) from None
    if not isinstance(record, dict):
        raise InvalidArgument(f"line {number}", "is not a JSON object")
    try:
        return _decode(number, record)
    except InvalidArgument as e:
        raise InvalidArgument(f"line {number}: {e.field}", e.rule) from None


def _decode(number: int, record: dict[str, Any]) -> HistoryLine:
    for key in KEYS:
        if key not in record:
            raise InvalidArgument(key, "is missing")
    kind = KINDS.get(record["kind"]) if isinstance(record["kind"], str) else None
    if kind is None:
        raise InvalidArgument(
            "kind", f"must be 'registered' or 'deleted', not {_shown(record['kind'])}"
        )
    extras = extra_fields(kind)
    for key in record:
        if key not in KEYS and key != CHAIN and key not in extras:
            raise InvalidArgument(key, f"is not a field of a {record['kind']} event")
    position = _positive(record, "position")
    version = _positive(record, "version")
    namespace = validate_namespace(record["namespace"])
    name = validate_name(record["name"])
    fields: dict[str, Any] = {
        "originator_id": image_id(namespace, name),
        "originator_version": version,
        "timestamp": _timestamp(record["timestamp"]),
        "namespace": namespace,
        "name": name,
        "actor": validate_actor(record["actor"]),
        "reason": validate_reason(record["reason"]),
    }
    if issubclass(kind, ImageName.Registered):
        fields["target"] = Descriptor.from_oci(record["target"])
        if not isinstance(record["labels"], dict):
            raise InvalidArgument("labels", "must be an object of strings")
        fields["labels"] = validate_labels(record["labels"])
    else:
        for key in ("target", "labels"):
            if record[key] is not None:
                raise InvalidArgument(key, "must be null for a deleted event")
    for key, field in extras.items():
        if key in record:
            fields[key] = _extra(key, field, record[key])
    return HistoryLine(number, position, kind(**fields), _chain(record.get(CHAIN)))


def _positive(record: dict[str, Any], key: str) -> int:
    value = record[key]
    if type(value) is not int or value < 1:
        raise InvalidArgument(key, f"must be a positive integer, not {_shown(value)}")
    return value


def _timestamp(value: object) -> datetime:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise InvalidArgument(
            "timestamp",
            "must be RFC 3339 with an offset, as 2026-11-28T09:30:00.000000Z, "
            f"not {_shown(value)}",
        )
    try:
        return datetime.fromisoformat(value)
    except ValueError as e:
        raise InvalidArgument("timestamp", str(e)) from None


def _extra(key: str, field: dataclasses.Field[Any], value: object) -> object:
    default = field.default
    if default is not dataclasses.MISSING and type(value) is not type(default):
        raise InvalidArgument(
            key, f"must be a {type(default).__name__}, not {_shown(value)}"
        )
    return value


def _chain(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _CHAIN.fullmatch(value):
        raise InvalidArgument(
            CHAIN, f"must be {HEAD_PREFIX} and 64 lowercase hex digits"
        )
    return bytes.fromhex(value[len(HEAD_PREFIX) :])


def _shown(value: object) -> str:
    """A value read from a line, as JSON, cut short."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:40] + "..."
