"""Labels on an image, and the actor and reason recorded with every change."""

from __future__ import annotations

from collections.abc import Mapping

from imageledger.domain.errors import InvalidArgument, shown

LABEL_MAX_BYTES = 4096  # key + value, as containerd's labels.Validate
MAX_LABELS = 256
ACTOR_MAX_LENGTH = 256
REASON_MAX_LENGTH = 4096


def validate_labels(labels: object) -> dict[str, str]:
    """Return `labels` as a plain dict, or raise InvalidArgument naming the label."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidArgument(
            "labels", f"must be a mapping of strings, not {type(labels).__name__}"
        )
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(
            "labels", f"{len(labels)} labels given, at most {MAX_LABELS} allowed"
        )
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidArgument(
                f"labels[{shown(key)}]", "keys and values must be strings"
            )
        if not key:
            raise InvalidArgument("labels", "label keys must not be empty")
        size = _utf8_length(f"labels[{shown(key)}]", key) + _utf8_length(
            f"labels[{shown(key)}]", value
        )
        if size > LABEL_MAX_BYTES:
            raise InvalidArgument(
                f"labels[{key[:20]!r}]",
                f"key and value are {size} bytes, at most {LABEL_MAX_BYTES} allowed",
            )
        checked[key] = value
    return checked


def labels_to_set(labels: object) -> dict[str, str]:
    """The labels a write sets: `labels` checked, without those whose value is
    empty. containerd removes a label set to "" (`ctr images label X team=`,
    its WriteLabels), so a user of a store that mirrors it expects the same.

    For new writes only (register, register_many, the CLI's `--label k=`): a
    history whose events hold an empty value (valid before) still reads and
    imports as it is, through validate_labels.
    """
    checked = validate_labels(labels)
    if "" not in checked.values():
        return checked
    return {key: value for key, value in checked.items() if value}


def validate_actor(actor: object) -> str:
    """Return `actor` (who made a change) if valid, else raise InvalidArgument."""
    if not isinstance(actor, str):
        raise InvalidArgument("actor", f"must be a string, not {type(actor).__name__}")
    if not actor.strip():
        raise InvalidArgument("actor", "must not be empty")
    _check_text("actor", actor, ACTOR_MAX_LENGTH)
    return actor


def validate_reason(reason: object) -> str | None:
    """Return `reason` (why a change was made, optional) if valid."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidArgument(
            "reason", f"must be a string, not {type(reason).__name__}"
        )
    _check_text("reason", reason, REASON_MAX_LENGTH)
    return reason


def _check_text(field: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise InvalidArgument(
            field, f"is {len(text)} characters, at most {limit} allowed"
        )
    _utf8_length(field, text)
    if "\x00" in text:
        raise InvalidArgument(field, "must not contain NUL characters")


def _utf8_length(field: str, text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidArgument(field, "is not valid UTF-8 text") from None
