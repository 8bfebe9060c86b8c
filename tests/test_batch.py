"""ImageStore.register_many: many registers in one transaction, all or nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import descriptor, digest
from imageledger import Descriptor, Image, ImageStore
from imageledger.errors import Conflict, InvalidArgument

Rows = Callable[[], list[tuple[Any, ...]]]


Select = Callable[[str], list[tuple[Any, ...]]]


def view_rows(select: Select) -> list[tuple[Any, ...]]:
    return select("SELECT * FROM images ORDER BY namespace, name")


def tracking(select: Select) -> int:
    rows = select(
        "SELECT notification_id FROM tracking " "WHERE application_name='current_view'"
    )
    return int(rows[0][0])


def test_a_batch_registers_every_item_and_returns_each_image(
    store: ImageStore, log_rows: Rows
) -> None:
    images = store.register_many(
        [
            {"name": "app:1", "target": descriptor(1), "labels": {"team": "a"}},
            ("app:2", descriptor(2)),
            ("app:3", Descriptor.from_oci(descriptor(3)), {"k": "v"}),
        ],
        actor="importer",
        reason="mirror",
    )
    assert all(isinstance(image, Image) for image in images)
    assert [(i.name, i.version, i.target.digest, i.labels) for i in images] == [
        ("app:1", 1, digest(1), {"team": "a"}),
        ("app:2", 1, digest(2), {}),
        ("app:3", 1, digest(3), {"k": "v"}),
    ]
    assert [store.get(name) for name in ("app:1", "app:2", "app:3")] == images
    assert [(e.actor, e.reason) for e in store.history("app:2")] == [
        ("importer", "mirror")
    ]
    assert len(log_rows()) == 3


def test_a_batch_leaves_the_same_state_as_the_same_single_registers(
    tmp_path: Path,
) -> None:
    steps: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("app:1", descriptor(1), {}),
        ("app:2", descriptor(2), {"a": "1"}),
        ("app:1", descriptor(1), {}),  # unchanged: writes nothing
        ("app:1", descriptor(3), {"b": "2"}),
    ]
    with ImageStore.open(tmp_path / "single.db") as single:
        single.register("app:2", descriptor(9))  # an existing name gets updated
        expected = [single.register(*step, actor="ci") for step in steps]
        single_state = {
            k: (i.target, i.labels, i.version) for k, i in single.replay().items()
        }
        single_history = [
            (e.position, e.version, e.target) for e in single.history("app:1")
        ]
    with ImageStore.open(tmp_path / "batch.db") as batch:
        batch.register("app:2", descriptor(9))
        returned = batch.register_many(steps, actor="ci")
        batch_state = {
            k: (i.target, i.labels, i.version) for k, i in batch.replay().items()
        }
        batch_history = [
            (e.position, e.version, e.target) for e in batch.history("app:1")
        ]
        assert {k: batch.get(k[1]) for k in batch.replay()} == batch.replay()
    key = ["namespace", "name", "target", "labels", "version"]
    assert [r.model_dump(include=set(key)) for r in returned] == [
        e.model_dump(include=set(key)) for e in expected
    ]
    assert batch_state == single_state
    assert batch_history == single_history
    connection = sqlite3.connect(tmp_path / "batch.db")
    try:
        assert connection.execute("SELECT COUNT(*) FROM images").fetchone()[0] > 0
    finally:
        connection.close()


def test_one_invalid_item_writes_nothing_and_names_the_item(
    store: ImageStore, log_rows: Rows, select_sql: Select
) -> None:
    store.register("app:0", descriptor(0))
    before, view_before = log_rows(), view_rows(select_sql)
    bad_target = {**descriptor(2), "digest": "sha256:short"}
    with pytest.raises(InvalidArgument) as raised:
        store.register_many(
            [("app:1", descriptor(1)), ("app:2", bad_target), ("app:3", descriptor(3))]
        )
    assert raised.value.field == "items[1].target.digest"
    assert log_rows() == before
    assert view_rows(select_sql) == view_before


@pytest.mark.parametrize(
    ("item", "field", "rule"),
    [
        (("Bad Name", descriptor(1)), "items[1].name", "printable ASCII"),
        (("app:2", descriptor(2), {"": "x"}), "items[1].labels", "must not be empty"),
        ({"name": "app:2"}, "items[1].target", "is required"),
        ({"name": "app:2", "target": descriptor(2), "tag": "x"}, "items[1]", "tag"),
        (
            {"name": "app:2", "target": descriptor(2), "expect": -1},
            "items[1].expect",
            "version number",
        ),
        ("app:2", "items[1]", "must be a mapping"),
        (("app:2",), "items[1]", "must be a mapping"),
    ],
)
def test_every_kind_of_invalid_item_is_refused_before_anything_is_written(
    store: ImageStore, log_rows: Rows, item: Any, field: str, rule: str
) -> None:
    with pytest.raises(InvalidArgument, match=rule) as raised:
        store.register_many([("app:1", descriptor(1)), item])
    assert raised.value.field == field
    assert log_rows() == []


def test_items_must_be_an_iterable_of_items(store: ImageStore) -> None:
    with pytest.raises(InvalidArgument, match="must be an iterable"):
        store.register_many({"name": "app:1", "target": descriptor(1)})  # type: ignore[arg-type]


def test_a_failed_condition_in_a_batch_writes_nothing(
    store: ImageStore, log_rows: Rows, select_sql: Select
) -> None:
    store.register("app:1", descriptor(1))
    before, view_before = log_rows(), view_rows(select_sql)
    with pytest.raises(Conflict, match='"app:1" already exists'):
        store.register_many(
            [
                ("app:0", descriptor(0)),
                {"name": "app:1", "target": descriptor(2), "expect": "absent"},
            ]
        )
    with pytest.raises(Conflict, match="is at version 1, not 7"):
        store.register_many(
            [
                ("app:0", descriptor(0)),
                {"name": "app:1", "target": descriptor(2), "expect": 7},
            ]
        )
    assert log_rows() == before
    assert view_rows(select_sql) == view_before
    moved = store.register_many(
        [{"name": "app:1", "target": descriptor(2), "expect": 1}]
    )
    assert moved[0].version == 2


def test_conditions_see_the_earlier_items_of_the_same_batch(
    store: ImageStore,
) -> None:
    images = store.register_many(
        [
            {"name": "app:1", "target": descriptor(1), "expect": "absent"},
            {"name": "app:1", "target": descriptor(2), "expect": 1},
            {"name": "app:1", "target": descriptor(3), "expect": 2},
        ]
    )
    assert [(i.version, i.target.digest) for i in images] == [
        (1, digest(1)),
        (2, digest(2)),
        (3, digest(3)),
    ]
    with pytest.raises(Conflict, match="already exists"):
        store.register_many(
            [
                ("app:2", descriptor(1)),
                {"name": "app:2", "target": descriptor(2), "expect": "absent"},
            ]
        )


def test_the_same_name_twice_in_a_batch_applies_in_order(
    store: ImageStore, log_rows: Rows
) -> None:
    images = store.register_many(
        [("app:1", descriptor(1)), ("app:1", descriptor(1)), ("app:1", descriptor(2))]
    )
    assert [(i.version, i.target.digest) for i in images] == [
        (1, digest(1)),
        (1, digest(1)),  # the second item changed nothing and wrote nothing
        (2, digest(2)),
    ]
    assert store.get("app:1") == images[-1]
    assert [row[2] for row in log_rows()] == [1, 2]


def test_an_unchanged_batch_writes_nothing(store: ImageStore, log_rows: Rows) -> None:
    first = store.register_many([("app:1", descriptor(1)), ("app:2", descriptor(2))])
    before = log_rows()
    again = store.register_many([("app:1", descriptor(1)), ("app:2", descriptor(2))])
    assert again == first
    assert log_rows() == before
    assert store.register_many([]) == []
    assert log_rows() == before


def test_a_batch_is_one_transaction_with_consecutive_positions(
    store: ImageStore, log_rows: Rows, select_sql: Select
) -> None:
    store.register("before", descriptor(0))
    store.register_many([(f"app:{i}", descriptor(i)) for i in range(1, 6)])
    store.register("after", descriptor(9))
    rows = log_rows()
    assert [row[0] for row in rows] == list(range(1, 8))
    positions = {
        e.name: e.position for n in ("app:1", "app:5") for e in store.history(n)
    }
    assert positions == {"app:1": 2, "app:5": 6}
    assert tracking(select_sql) == 7


def test_a_batch_continues_deleted_names_and_keeps_created_at_of_live_ones(
    store: ImageStore,
) -> None:
    kept = store.register("kept", descriptor(1))
    store.register("gone", descriptor(1))
    store.delete("gone")
    images = store.register_many([("kept", descriptor(2)), ("gone", descriptor(2))])
    assert (images[0].version, images[0].created_at) == (2, kept.created_at)
    assert (images[1].version, images[1].created_at) == (3, images[1].updated_at)
    assert [e.kind for e in store.history("gone")] == [
        "registered",
        "deleted",
        "registered",
    ]


def test_a_batch_writes_into_the_namespace_given(store: ImageStore) -> None:
    store.register_many([("app:1", descriptor(1))], namespace="team-a")
    assert store.get("app:1", namespace="team-a").target.digest == digest(1)
    assert list(store.list()) == []


def test_a_batch_onto_a_view_that_is_behind_reads_the_log(
    store: ImageStore, run_sql: Callable[[str], None], select_sql: Select
) -> None:
    store.register("a", descriptor(1))
    store.register("b", descriptor(2))
    store.delete("b")
    # The view as if it had never run.
    run_sql("DELETE FROM images")
    run_sql(
        "UPDATE tracking SET notification_id=0 WHERE application_name='current_view'"
    )
    images = store.register_many([("b", descriptor(3)), ("a", descriptor(1))])
    assert [(i.name, i.version) for i in images] == [("b", 3), ("a", 1)]
    assert [i.name for i in store.list()] == ["a", "b"]
    assert store.replay() == {(i.namespace, i.name): i for i in store.list()}
    assert tracking(select_sql) == 4
