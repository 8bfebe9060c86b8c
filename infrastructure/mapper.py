"""Mapping between image events and stored events, with an allow-list of topics.

Topics read from storage are looked up in `EVENT_CLASSES`, never imported: a
hostile or damaged database cannot make us load a module. Event state is JSON
(orjson, sorted keys), descriptors in their OCI JSON form.

The flags of write-once names (`immutable` on a registration, `forced` on a
delete) are stored only when true: every event without them keeps the bytes
it had before they existed, and so its link in the hash chain.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import Mapper, StoredEvent, Transcoder
from pydantic import BaseModel

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import InvalidArgument
from imageledger.domain.image import IMAGE_ID_NAMESPACE, ImageName, image_id
from imageledger.domain.labels import validate_actor, validate_labels, validate_reason
from imageledger.domain.names import validate_name, validate_namespace
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.rows import stored_time

EVENT_CLASSES: dict[str, type[ImageName.Event]] = {
    ImageName.Registered.TOPIC: ImageName.Registered,
    ImageName.Deleted.TOPIC: ImageName.Deleted,
}

_COMMON_FIELDS = ("actor", "name", "namespace", "reason", "timestamp")
_FIELDS: dict[type[ImageName.Event], frozenset[str]] = {
    ImageName.Registered: frozenset((*_COMMON_FIELDS, "labels", "target")),
    ImageName.Deleted: frozenset(_COMMON_FIELDS),
}
# Each kind's flag, stored only when true (see the module's docstring).
_FLAGS: dict[type[ImageName.Event], str] = {
    ImageName.Registered: "immutable",
    ImageName.Deleted: "forced",
}
_FLAGGED_FIELDS = {cls: _FIELDS[cls] | {flag} for cls, flag in _FLAGS.items()}


def _encode_default(value: object) -> Any:
    if isinstance(value, Descriptor):
        return value.to_oci()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    raise TypeError(f"cannot store a {type(value).__name__}")


class OrjsonTranscoder(Transcoder):
    """JSON with sorted keys, so equal states are equal bytes."""

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj, default=_encode_default, option=orjson.OPT_SORT_KEYS)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, found {type(value).__name__}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, found {type(value).__name__}")
    return value


def _labels(value: object) -> dict[str, str]:
    if value == {}:  # most images have none
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("labels are not an object of strings")
    return value


def _utc_timestamp(value: object) -> datetime:
    """A stored time as the rules want it: already in UTC."""
    moment = datetime.fromisoformat(_string(value))
    if moment.utcoffset() != timedelta(0):
        raise ValueError(f"the timestamp {value!r} is not UTC")
    return moment


_DECODERS: dict[str, Callable[[Any], Any]] = {
    "actor": _string,
    "name": _string,
    "namespace": _string,
    "reason": lambda v: None if v is None else _string(v),
    "timestamp": stored_time,
    "labels": _labels,
    "target": Descriptor.from_oci,
    "immutable": _flag,
    "forced": _flag,
}


def _checked(validate: Callable[[Any], Any], decode: Callable[[Any], Any]) -> Any:
    """A decoder that also validates, keeping the value exactly as stored."""

    def checked(value: Any) -> Any:
        validate(value)
        return decode(value)

    return checked


# What verify decodes with: every field validated as `register` validates it.
_CHECKED_DECODERS: dict[str, Callable[[Any], Any]] = {
    **_DECODERS,
    "actor": _checked(validate_actor, _string),
    "name": _checked(validate_name, _string),
    "namespace": _checked(validate_namespace, _string),
    "reason": _checked(validate_reason, _DECODERS["reason"]),
    "timestamp": _utc_timestamp,
    "labels": _checked(validate_labels, _labels),
}


LogRow = Sequence[Any]
"""One row of the log as a backend reads it: (position, aggregate id, version,
topic, state)."""

Decoded = list[tuple[int, ImageName.Event]]
"""Events as `decode_rows` gives them: (position, event), in the rows' order."""


class LedgerMapper(Mapper[UUID]):
    """Converts image events to stored events and back, for our topics only."""

    def __init__(self) -> None:
        super().__init__(transcoder=OrjsonTranscoder())

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = dict(vars(domain_event))
        if not state.get(_FLAGS[type(domain_event)], True):
            del state[_FLAGS[type(domain_event)]]
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=type(domain_event).TOPIC,
            state=self.transcoder.encode(state),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> ImageName.Event:
        return self._decode(stored_event, _DECODERS)

    def to_checked_event(self, stored_event: StoredEvent) -> ImageName.Event:
        """`to_domain_event`, with every field validated as `register` does,
        the time required to be UTC, and the aggregate id required to be the
        name's: what verify proves of each stored event."""
        event = self._decode(stored_event, _CHECKED_DECODERS)
        if event.originator_id != image_id(event.namespace, event.name):
            raise StoreError(
                f"{_where(stored_event)} is damaged: it is filed under aggregate "
                f"{event.originator_id}, not that of its name"
            )
        return event

    def decode_rows(
        self,
        rows: Iterable[LogRow],
        one: Callable[[LogRow], ImageName.Event],
        *,
        checked: bool = False,
    ) -> Decoded:
        """The events of many log rows, in one pass: what `one(row)` gives
        for each row, where `one` is `to_domain_event` (or, with `checked`,
        `to_checked_event`) of the row as the backend builds it.

        The usual row (a known topic, the fields of its kind, each of its
        type) is decoded here directly, with the same decoders and
        validators, and without the per-field dispatch; any other row, and
        any row whose field does not pass, goes to `one`, which decodes it
        again and raises its error in its words. So every row gets exactly
        the event, or the error, that `one` gives it.
        """
        decoded: Decoded = []
        append = decoded.append
        direct = self._checked_row if checked else self._plain_row
        for row in rows:
            try:
                event = direct(row)
            except Exception:  # `one` decodes it again, and says what is wrong
                event = None
            append((row[0], one(row) if event is None else event))
        return decoded

    @staticmethod
    def _plain_row(row: LogRow) -> ImageName.Event | None:
        """The event of an intact row as to_domain_event decodes it; None or
        an exception for any other row."""
        fields = _fields(row)
        if fields is None:
            return None
        cls, raw, flag = fields
        state = {
            "namespace": _string(raw["namespace"]),
            "name": _string(raw["name"]),
            "actor": _string(raw["actor"]),
            "reason": _DECODERS["reason"](raw["reason"]),
            "timestamp": stored_time(raw["timestamp"]),
        }
        return _event(cls, state, raw, flag, row, checked=False)

    @staticmethod
    def _checked_row(row: LogRow) -> ImageName.Event | None:
        """The event of an intact row as to_checked_event decodes it (every
        field validated); None or an exception for any other row."""
        fields = _fields(row)
        if fields is None:
            return None
        cls, raw, flag = fields
        state = {
            "namespace": validate_namespace(_string(raw["namespace"])),
            "name": validate_name(_string(raw["name"])),
            "actor": validate_actor(_string(raw["actor"])),
            "reason": _CHECKED_DECODERS["reason"](raw["reason"]),
            "timestamp": _utc_timestamp(raw["timestamp"]),
        }
        return _event(cls, state, raw, flag, row, checked=True)

    def _decode(
        self, stored_event: StoredEvent, decoders: dict[str, Callable[[Any], Any]]
    ) -> ImageName.Event:
        cls = EVENT_CLASSES.get(stored_event.topic)
        if cls is None:
            raise StoreError(
                f"{_where(stored_event)} has event topic {stored_event.topic!r}, "
                "which is not an imageledger event; refusing to load it"
            )
        try:
            raw = self.transcoder.decode(stored_event.state)
            if not isinstance(raw, dict) or (
                raw.keys() != _FIELDS[cls] and raw.keys() != _FLAGGED_FIELDS[cls]
            ):
                raise TypeError("its fields are not those of " + cls.TOPIC)
            state = {key: decoders[key](value) for key, value in raw.items()}
            state.setdefault(_FLAGS[cls], False)
            originator_id = stored_event.originator_id
            state["originator_id"] = (
                originator_id
                if isinstance(originator_id, UUID)
                else UUID(originator_id)
            )
            state["originator_version"] = stored_event.originator_version
        except (orjson.JSONDecodeError, TypeError, ValueError, InvalidArgument) as e:
            raise StoreError(f"{_where(stored_event)} is damaged: {e}") from e
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", state)
        return event


def _fields(row: LogRow) -> tuple[type[ImageName.Event], dict[str, Any], bool] | None:
    """A row's event class, its decoded state and its flag, when the state
    holds exactly the fields of its kind (and a flag that is true or false)."""
    cls = EVENT_CLASSES.get(row[3])
    if cls is None:
        return None
    raw = orjson.loads(row[4])
    if type(raw) is not dict:
        return None
    keys = raw.keys()
    if keys == _FIELDS[cls]:
        return cls, raw, False
    if keys == _FLAGGED_FIELDS[cls]:
        flag = raw[_FLAGS[cls]]
        if type(flag) is bool:
            return cls, raw, flag
    return None


def _event(
    cls: type[ImageName.Event],
    state: dict[str, Any],
    raw: dict[str, Any],
    flag: bool,
    row: LogRow,
    *,
    checked: bool,
) -> ImageName.Event | None:
    """The event of `cls` with `state` and the rest of `raw` and `row`
    decoded as `_decode` decodes them; None when, `checked`, the row is not
    filed under its name's aggregate id."""
    if cls is ImageName.Registered:
        labels = raw["labels"]
        if checked:
            validate_labels(labels)
        state["labels"] = _labels(labels)
        state["target"] = Descriptor.from_oci(raw["target"])
    state[_FLAGS[cls]] = flag
    stream = row[1]
    originator_id = stream if isinstance(stream, UUID) else UUID(stream)
    if checked and originator_id.bytes != _image_id_bytes(
        state["namespace"], state["name"]
    ):
        return None
    state["originator_id"] = originator_id
    state["originator_version"] = row[2]
    event = object.__new__(cls)
    object.__setattr__(event, "__dict__", state)
    return event


_ID_NAMESPACE = IMAGE_ID_NAMESPACE.bytes


def _image_id_bytes(namespace: str, name: str) -> bytes:
    """The bytes of `image_id(namespace, name)`: uuid5 as RFC 4122 defines it
    (sha1 of the namespace and the name, version 5, the RFC's variant),
    without building a UUID object, which costs more than the hash."""
    digest = bytearray(
        hashlib.sha1(
            _ID_NAMESPACE + f"{namespace}/{name}".encode(), usedforsecurity=False
        ).digest()[:16]
    )
    digest[6] = digest[6] & 0x0F | 0x50
    digest[8] = digest[8] & 0x3F | 0x80
    return bytes(digest)


def _where(stored_event: StoredEvent) -> str:
    position = getattr(stored_event, "id", None)
    if position is not None:
        return f"the event at position {position}"
    return (
        f"the stored event {stored_event.originator_id} "
        f"version {stored_event.originator_version}"
    )
