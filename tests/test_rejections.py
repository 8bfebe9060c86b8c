"""Every invalid input of the rule tables, sent through the store, writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from test_descriptor import INVALID as INVALID_DESCRIPTORS
from test_labels import INVALID_LABELS
from test_names import INVALID_NAMES, INVALID_NAMESPACES

from conftest import descriptor
from imageledger import ImageStore
from imageledger.errors import InvalidArgument

Rows = Callable[[], list[tuple[Any, ...]]]

CASES: list[tuple[dict[str, Any], str, str]] = [
    *(({"name": n}, "name", rule) for n, rule in INVALID_NAMES),
    *(({"namespace": ns}, "namespace", rule) for ns, rule in INVALID_NAMESPACES),
    *(({"target": t}, field, rule) for t, field, rule in INVALID_DESCRIPTORS),
    *(({"labels": labels}, field, rule) for labels, field, rule in INVALID_LABELS),
]


@pytest.mark.parametrize(("change", "field", "rule"), CASES)
def test_a_rejected_register_names_field_and_rule_and_leaves_the_log_unchanged(
    store: ImageStore, log_rows: Rows, change: dict[str, Any], field: str, rule: str
) -> None:
    store.register("app:1", descriptor(1))
    before = log_rows()
    call = {"name": "app:1", "target": descriptor(2), **change}
    with pytest.raises(InvalidArgument) as caught:
        store.register(call.pop("name"), call.pop("target"), **call)
    assert caught.value.field == field
    assert rule in caught.value.rule
    assert str(caught.value) == f"invalid {field}: {caught.value.rule}"
    assert log_rows() == before
    assert store.get("app:1").target.digest == descriptor(1)["digest"]
