"""The Image aggregate on its own: which events each command emits."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import descriptor
from imageledger import Descriptor
from imageledger.domain.image import ImageName, image_id
from imageledger.errors import ImageNotFound

A = Descriptor.from_oci(descriptor(1))
B = Descriptor.from_oci(descriptor(2))


def new_image() -> ImageName:
    return ImageName.register_new(
        namespace="default", name="app:1", target=A, labels={}, actor="ci", reason=None
    )


def test_the_aggregate_has_exactly_two_kinds_of_event_with_stable_topics() -> None:
    events = {
        name: value
        for name, value in vars(ImageName).items()
        if isinstance(value, type) and issubclass(value, ImageName.Event)
    }
    assert set(events) == {"Event", "Registered", "Deleted"}
    assert ImageName.Registered.TOPIC == "imageledger:Image.Registered"
    assert ImageName.Deleted.TOPIC == "imageledger:Image.Deleted"
    fields = {f.name for f in dataclasses.fields(ImageName.Registered)}
    assert {"namespace", "name", "actor", "reason", "target", "labels"} <= fields
    assert {"namespace", "name", "actor", "reason"} <= {
        f.name for f in dataclasses.fields(ImageName.Deleted)
    }


def test_image_ids_are_deterministic_per_namespace_and_name() -> None:
    assert image_id("default", "app:1") == image_id("default", "app:1")
    assert image_id("default", "app:1") != image_id("other", "app:1")
    assert image_id("default", "app:1") != image_id("default", "app:2")
    assert new_image().id == image_id("default", "app:1")


def test_the_first_registration_is_the_created_event() -> None:
    image = new_image()
    (event,) = image.collect_events()
    assert isinstance(event, ImageName.Registered)
    assert (event.originator_version, event.actor, event.target) == (1, "ci", A)
    assert image.live and image.version == 1 and image.created_at == event.timestamp


def test_registering_the_same_target_and_labels_emits_nothing() -> None:
    image = new_image()
    image.collect_events()
    assert image.register(A, {}, actor="ci", reason=None) is False
    assert image.collect_events() == []


def test_retargeting_or_relabelling_emits_registered() -> None:
    image = new_image()
    image.collect_events()
    assert image.register(B, {}, actor="ci", reason="move") is True
    assert image.register(B, {"team": "x"}, actor="ci", reason=None) is True
    events = image.collect_events()
    assert [type(e) for e in events] == [ImageName.Registered, ImageName.Registered]
    assert [e.originator_version for e in events] == [2, 3]
    assert image.target == B and image.labels == {"team": "x"}


def test_delete_then_register_continues_the_same_stream() -> None:
    image = new_image()
    image.delete(actor="ci", reason="gone")
    assert not image.live
    image.register(A, {}, actor="ci", reason=None)
    events = image.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "Deleted", "Registered"]
    assert [e.originator_version for e in events] == [1, 2, 3]
    assert image.created_at == events[2].timestamp  # a new life starts


def test_deleting_a_deleted_image_raises_not_found() -> None:
    image = new_image()
    image.delete(actor="ci", reason=None)
    with pytest.raises(ImageNotFound):
        image.delete(actor="ci", reason=None)


def test_delete_if_digest_only_deletes_at_that_digest() -> None:
    image = new_image()
    with pytest.raises(ImageNotFound, match=f"points at {A.digest}, not {B.digest}"):
        image.delete(actor="ci", reason=None, if_digest=B.digest)
    assert image.live
    image.delete(actor="ci", reason=None, if_digest=A.digest)
    assert not image.live


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    image = new_image()
    image.register(B, {"k": "v"}, actor="ci", reason=None)
    image.delete(actor="ci", reason=None)
    image.register(A, {}, actor="ci", reason=None)
    rebuilt = None
    for event in image.collect_events():
        rebuilt = event.mutate(rebuilt)
    assert rebuilt is not None
    assert (rebuilt.version, rebuilt.target, rebuilt.labels, rebuilt.live) == (
        image.version,
        image.target,
        image.labels,
        image.live,
    )
