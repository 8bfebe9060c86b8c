"""A factory's `write`: read, decide and append in one transaction, both backends."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import pytest
from eventsourcing.persistence import RecordConflictError

from conftest import descriptor, digest
from imageledger import ImageStore
from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import ImageNotFound
from imageledger.domain.image import ImageName
from imageledger.infrastructure.storage import Snapshot, StoreFactory
from imageledger.projections.current_view import CurrentImage


def factory(store: ImageStore) -> StoreFactory:
    return store._log._factory


def new_name(name: str, n: int) -> list[ImageName.Event]:
    image = ImageName.register_new(
        namespace="default",
        name=name,
        target=Descriptor.model_validate(descriptor(n)),
        labels={"n": str(n)},
        actor="tester",
        reason=None,
    )
    return cast(list[ImageName.Event], image.collect_events())


def test_decide_sees_each_names_snapshot_and_its_events_are_appended(
    store: ImageStore,
) -> None:
    store.register("app:1", descriptor(1))
    first = store.checkpoint().position
    seen: dict[str, Snapshot] = {}

    def decide(snapshots: dict[str, Snapshot]) -> Sequence[ImageName.Event]:
        seen.update(snapshots)
        old = snapshots["app:1"]
        assert isinstance(old.row, CurrentImage)
        image = ImageName.resume(old.last[0][1], None, old.row.image.created_at)
        image.register(
            Descriptor.model_validate(descriptor(2)), {}, actor="tester", reason=None
        )
        moved = cast(list[ImageName.Event], image.collect_events())
        return [*moved, *new_name("new:1", 3)]

    positions = factory(store).write("default", ["app:1", "new:1"], decide)

    old, new = seen["app:1"], seen["new:1"]
    assert isinstance(old.row, CurrentImage)
    assert old.row.image.target.digest == digest(1)
    assert [(p, type(e).__name__, e.originator_version) for p, e in old.last] == [
        (first, "Registered", 1)
    ]
    assert old.view_position == first
    assert (new.row, new.last) == (None, [])
    assert len(positions) == 2
    assert positions[0] > first
    assert positions[1] > positions[0]
    assert store.checkpoint().position == positions[-1]
    moved = store.get("app:1")
    assert (moved.target.digest, moved.version) == (digest(2), 2)
    assert store.get("new:1").target.digest == digest(3)
    assert store.verify().position == positions[-1]  # links and views written


def test_an_exception_from_decide_writes_nothing(store: ImageStore) -> None:
    store.register("app:1", descriptor(1))
    before = store.checkpoint()

    def decide(snapshots: dict[str, Snapshot]) -> Sequence[ImageName.Event]:
        raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        factory(store).write("default", ["app:1"], decide)
    assert store.checkpoint() == before
    assert store.get("app:1").version == 1


def test_no_events_write_nothing_and_return_no_positions(store: ImageStore) -> None:
    store.register("app:1", descriptor(1))
    before = store.checkpoint()

    assert factory(store).write("default", ["app:1", "x:1"], lambda _: []) == []
    assert store.checkpoint() == before
    with pytest.raises(ImageNotFound):
        store.get("x:1")
    assert store.verify().position == before.position


def test_an_event_at_a_taken_version_conflicts_and_writes_nothing(
    store: ImageStore,
) -> None:
    store.register("app:1", descriptor(1))
    before = store.checkpoint()

    def decide(snapshots: dict[str, Snapshot]) -> Sequence[ImageName.Event]:
        # Decided as if the name were new: version 1, which the log has.
        return [*new_name("other:1", 4), *new_name("app:1", 5)]

    with pytest.raises(RecordConflictError):
        factory(store).write("default", ["other:1", "app:1"], decide)
    assert store.checkpoint() == before
    with pytest.raises(ImageNotFound):
        store.get("other:1")
    assert store.get("app:1").target.digest == digest(1)
