"""Labels (containerd's 4096-byte rule), and the actor and reason of a change."""

from __future__ import annotations

import pytest

from imageledger.domain.labels import (
    LABEL_MAX_BYTES,
    validate_actor,
    validate_labels,
    validate_reason,
)
from imageledger.errors import InvalidArgument


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"a": ""},
        {"io.cri-containerd.image": "managed", "team": "payments"},
        {"k": "v" * (LABEL_MAX_BYTES - 1)},
        {"ключ": "значение"},
    ],
)
def test_valid_labels_are_kept(labels: dict[str, str]) -> None:
    assert validate_labels(labels) == labels


def test_no_labels_means_an_empty_mapping() -> None:
    assert validate_labels(None) == {}


INVALID_LABELS: list[tuple[object, str, str]] = [
    ({"k": "v" * LABEL_MAX_BYTES}, "labels['k']", "are 4097 bytes, at most 4096"),
    # Bytes, not characters: 2,049 two-byte characters are 4,098 bytes.
    ({"é" * 2049: ""}, "labels['éééééééééééééééééééé']", "4098 bytes"),
    ({"": "x"}, "labels", "keys must not be empty"),
    ({"k": 1}, "labels['k']", "must be strings"),
    ({1: "v"}, "labels[1]", "must be strings"),
    ({"k": "\udcff"}, "labels['k']", "not valid UTF-8"),
    (["k=v"], "labels", "must be a mapping"),
    ({f"k{i}": "v" for i in range(257)}, "labels", "at most 256 allowed"),
]


@pytest.mark.parametrize(("labels", "field", "rule"), INVALID_LABELS)
def test_invalid_labels_name_the_label_and_the_rule(
    labels: object, field: str, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_labels(labels)
    assert caught.value.field == field
    assert rule in caught.value.rule


@pytest.mark.parametrize(
    ("actor", "rule"),
    [
        ("", "must not be empty"),
        ("  ", "must not be empty"),
        ("a" * 257, "at most 256"),
        ("ci\x00bot", "NUL"),
        ("\udcff", "not valid UTF-8"),
        (7, "must be a string"),
    ],
)
def test_invalid_actors_are_refused(actor: object, rule: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_actor(actor)
    assert caught.value.field == "actor"
    assert rule in caught.value.rule


@pytest.mark.parametrize(
    ("reason", "rule"),
    [("r" * 4097, "at most 4096"), ("a\x00", "NUL"), (b"why", "must be a string")],
)
def test_invalid_reasons_are_refused(reason: object, rule: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_reason(reason)
    assert caught.value.field == "reason"
    assert rule in caught.value.rule


def test_a_reason_is_optional_and_kept_as_given() -> None:
    assert validate_reason(None) is None
    assert validate_reason("rollback after INC-42") == "rollback after INC-42"
