"""Labels (containerd's 4096-byte rule), and the actor and reason of a change."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable

import orjson
import pytest
from test_cli import register_args

from conftest import Rows, Run, descriptor, ok
from imageledger import ImageStore
from imageledger.domain.labels import (
    LABEL_MAX_BYTES,
    labels_to_set,
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


# Empty values: containerd removes a label set to "" (its WriteLabels), so a
# write does not set one; histories that hold one (valid before) still import.


def test_a_label_set_to_the_empty_string_is_not_set() -> None:
    assert labels_to_set({"team": "", "tier": "gold"}) == {"tier": "gold"}
    assert labels_to_set({"team": ""}) == {}
    assert validate_labels({"team": ""}) == {"team": ""}  # what a history holds
    with pytest.raises(InvalidArgument, match="keys and values must be strings"):
        labels_to_set({"team": None})


def test_register_and_register_many_drop_empty_label_values(
    store: ImageStore, log_rows: Rows
) -> None:
    image = store.register("app:1", descriptor(1), {"team": "web", "tier": ""})
    assert image.labels == store.get("app:1").labels == {"team": "web"}
    assert orjson.loads(log_rows()[-1][4])["labels"] == {"team": "web"}
    # Setting it to "" removes it, as `ctr images label app:1 team=` does.
    assert store.register("app:1", descriptor(1), {"team": ""}).version == 2
    assert store.get("app:1").labels == {}
    assert store.register("app:1", descriptor(1), {"team": ""}).version == 2
    images = store.register_many(
        [("app:2", descriptor(2), {"a": ""}), {"name": "app:3", "target": descriptor(3),
                                              "labels": {"a": "", "b": "c"}}]
    )  # fmt: skip
    assert [i.labels for i in images] == [{}, {"b": "c"}]
    assert [i.labels for i in store.list()] == [{}, {}, {"b": "c"}]
    assert len(log_rows()) == 4


def test_the_cli_label_with_no_value_leaves_it_unset(run: Run) -> None:
    ok(run(*register_args("app:1", 1, "--label", "team=web", "--label", "tier=")))
    assert json.loads(ok(run("--json", "get", "app:1")))["labels"] == {"team": "web"}
    ok(run(*register_args("app:1", 1, "--label", "team=")))
    assert json.loads(ok(run("--json", "get", "app:1")))["labels"] == {}
    assert ok(run("list", "-q", "labels.team")) == ""


def test_a_history_with_an_empty_label_value_still_imports_as_it_is(
    store: ImageStore, log_rows: Rows, new_location: Callable[[], str]
) -> None:
    store.register("app:1", descriptor(1), {"team": "web"})
    out = io.BytesIO()
    store.export_log(out)
    # The same event as an older store wrote it, with "team": "" in its bytes
    # and the chain's link over those bytes.
    _, stream, version, topic, state = log_rows()[0]
    state = state.replace(b'"team":"web"', b'"team":""')
    fields = [stream.encode(), str(version).encode(), topic.encode(), state]
    canonical = b"".join(struct.pack(">Q", len(f)) + f for f in fields)
    link = "sha256:" + hashlib.sha256(bytes(32) + canonical).hexdigest()
    line = json.loads(out.getvalue())
    line |= {"labels": {"team": ""}, "chain": link}
    with ImageStore.open(new_location()) as old:
        assert old.import_log(io.BytesIO(json.dumps(line).encode())) == 1
        assert old.get("app:1").labels == {"team": ""}
        assert [i.name for i in old.list("labels.team")] == ["app:1"]
        assert str(old.checkpoint()) == f"1:{link}"
        assert old.verify().events == 1
