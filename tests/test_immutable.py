"""Write-once names: `register(..., immutable=True)` binds a name to its content.

Every test runs on SQLite and on PostgreSQL (the `store` fixture) and checks
the log's rows as well as what the store returns, so that "refused" also
means "nothing written".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from eventsourcing.persistence import StoredEvent

from conftest import INDEX, MANIFEST, Rows, descriptor, digest
from imageledger import ImageStore
from imageledger.domain.image import ImageName
from imageledger.errors import (
    Conflict,
    ImageNotFound,
    ImmutableImage,
    IntegrityError,
    InvalidArgument,
    StoreError,
)
from imageledger.infrastructure.mapper import LedgerMapper

NAME = "registry.example/app:1.4.2"
REFUSED_REPOINT = (
    f'image "{NAME}" in namespace "default" is immutable at {digest(1)}; '
    f"it cannot point at {digest(2)}"
)
REFUSED_DELETE = (
    f'image "{NAME}" in namespace "default" is immutable at {digest(1)}; '
    "delete it with force=True"
)


def state(row: tuple[Any, ...]) -> dict[str, Any]:
    """The stored JSON of one log row (as `log_rows` returns them)."""
    decoded: dict[str, Any] = orjson.loads(row[4])
    return decoded


@pytest.fixture
def bound(store: ImageStore) -> ImageStore:
    """The store with NAME registered immutable at descriptor(1)."""
    store.register(NAME, descriptor(1), {"team": "web"}, immutable=True)
    return store


def test_an_immutable_registration_shows_the_flag_and_stores_it(
    store: ImageStore, log_rows: Rows
) -> None:
    image = store.register(NAME, descriptor(1), immutable=True)
    assert (image.immutable, image.version) == (True, 1)
    assert store.get(NAME).immutable is True
    assert [i.immutable for i in store.list()] == [True]
    entry = store.history(NAME)[0]
    assert (entry.kind, entry.immutable, entry.forced) == ("registered", True, False)
    assert state(log_rows()[0])["immutable"] is True


def test_plain_events_are_stored_without_the_flags(
    store: ImageStore, log_rows: Rows
) -> None:
    # The bytes (and so the hash chain) of every event that does not use the
    # feature are what they were before it existed.
    image = store.register("app:1", descriptor(1))
    store.delete("app:1", force=True)  # nothing to force: not recorded
    assert image.immutable is False
    keys = [sorted(state(row)) for row in log_rows()]
    assert keys == [
        ["actor", "labels", "name", "namespace", "reason", "target", "timestamp"],
        ["actor", "name", "namespace", "reason", "timestamp"],
    ]
    assert [(e.immutable, e.forced) for e in store.history("app:1")] == [
        (False, False),
        (False, False),
    ]


def test_repointing_an_immutable_name_is_refused_and_writes_nothing(
    bound: ImageStore, log_rows: Rows
) -> None:
    rows = log_rows()
    with pytest.raises(ImmutableImage) as refused:
        bound.register(NAME, descriptor(2), {"team": "web"})
    assert str(refused.value) == REFUSED_REPOINT
    assert isinstance(refused.value, Conflict)
    assert (refused.value.digest, refused.value.target) == (digest(1), digest(2))
    with pytest.raises(ImmutableImage, match="it cannot point at"):
        bound.register(NAME, descriptor(2), immutable=True)
    assert log_rows() == rows
    assert bound.get(NAME).target.digest == digest(1)


@pytest.mark.parametrize(
    "changed",
    [
        {"mediaType": INDEX},
        {"size": 9999},
    ],
)
def test_the_same_digest_with_another_media_type_or_size_is_refused(
    bound: ImageStore, log_rows: Rows, changed: dict[str, Any]
) -> None:
    rows = log_rows()
    asked = {**descriptor(1), **changed}
    with pytest.raises(ImmutableImage) as refused:
        bound.register(NAME, asked)
    assert str(refused.value) == (
        f'image "{NAME}" in namespace "default" is immutable at {digest(1)} '
        f"({MANIFEST}, 1001 bytes); it cannot point at {digest(1)} "
        f"({asked['mediaType']}, {asked['size']} bytes)"
    )
    assert log_rows() == rows


def test_registering_the_same_target_again_writes_nothing(
    bound: ImageStore, log_rows: Rows
) -> None:
    rows = log_rows()
    again = bound.register(NAME, descriptor(1), {"team": "web"})
    also = bound.register(NAME, descriptor(1), {"team": "web"}, immutable=True)
    assert (again.version, again.immutable) == (1, True)
    assert also == again == bound.get(NAME)
    assert log_rows() == rows


def test_labels_and_annotations_of_an_immutable_name_may_change(
    bound: ImageStore, log_rows: Rows
) -> None:
    relabelled = bound.register(NAME, descriptor(1), {"team": "api"})
    annotated = bound.register(
        NAME,
        descriptor(1, annotations={"org.opencontainers.image.ref.name": "1.4.2"}),
        {"team": "api"},
    )
    assert (relabelled.version, relabelled.labels) == (2, {"team": "api"})
    assert (annotated.version, annotated.immutable) == (3, True)
    assert annotated.target.annotations == {
        "org.opencontainers.image.ref.name": "1.4.2"
    }
    # The caller did not ask again: every later registration still carries it.
    assert [state(row).get("immutable") for row in log_rows()] == [True] * 3
    assert [(e.kind, e.immutable) for e in bound.history(NAME)] == [
        ("registered", True)
    ] * 3


def test_a_mutable_name_becomes_immutable_at_its_target_with_one_event(
    store: ImageStore, log_rows: Rows
) -> None:
    store.register(NAME, descriptor(1))
    image = store.register(NAME, descriptor(1), immutable=True)
    assert (image.version, image.immutable, image.target.digest) == (2, True, digest(1))
    assert len(log_rows()) == 2
    with pytest.raises(ImmutableImage):
        store.register(NAME, descriptor(2))


def test_a_mutable_name_repointed_with_immutable_ends_bound_to_the_new_target(
    store: ImageStore,
) -> None:
    store.register(NAME, descriptor(2))
    image = store.register(NAME, descriptor(1), immutable=True)
    assert (image.version, image.immutable, image.target.digest) == (2, True, digest(1))
    with pytest.raises(ImmutableImage) as refused:
        store.register(NAME, descriptor(2))
    assert str(refused.value) == REFUSED_REPOINT


def test_deleting_an_immutable_name_without_force_is_refused(
    bound: ImageStore, log_rows: Rows
) -> None:
    rows = log_rows()
    with pytest.raises(ImmutableImage) as refused:
        bound.delete(NAME)
    assert str(refused.value) == REFUSED_DELETE
    assert refused.value.target is None
    assert log_rows() == rows
    assert bound.get(NAME).version == 1


def test_a_forced_delete_is_recorded_and_keeps_the_binding(
    bound: ImageStore, log_rows: Rows
) -> None:
    bound.delete(NAME, force=True, actor="sec", reason="CVE-2026-1234")
    with pytest.raises(ImageNotFound):
        bound.get(NAME)
    assert state(log_rows()[-1])["forced"] is True
    last = bound.history(NAME)[-1]
    assert (last.kind, last.forced, last.immutable, last.actor) == (
        "deleted",
        True,
        True,
        "sec",
    )
    # The binding survives the delete: no other target, ever.
    with pytest.raises(ImmutableImage) as refused:
        bound.register(NAME, descriptor(2))
    assert str(refused.value) == REFUSED_REPOINT
    with pytest.raises(ImmutableImage):
        bound.register(NAME, descriptor(2), expect="absent")
    assert len(log_rows()) == 2


def test_an_immutable_name_comes_back_at_its_bound_digest_after_a_delete(
    bound: ImageStore, log_rows: Rows
) -> None:
    bound.delete(NAME, force=True)
    back = bound.register(NAME, descriptor(1), {"team": "ops"}, expect="absent")
    assert (back.version, back.immutable, back.labels) == (3, True, {"team": "ops"})
    assert back.created_at == back.updated_at  # a new life began
    assert state(log_rows()[-1])["immutable"] is True
    assert [(e.kind, e.immutable, e.forced) for e in bound.history(NAME)] == [
        ("registered", True, False),
        ("deleted", True, True),
        ("registered", True, False),
    ]
    with pytest.raises(ImmutableImage):
        bound.delete(NAME)


def test_deleting_an_absent_immutable_name_is_not_found_not_a_conflict(
    bound: ImageStore,
) -> None:
    bound.delete(NAME, force=True)
    with pytest.raises(ImageNotFound):
        bound.delete(NAME)
    with pytest.raises(ImageNotFound):
        bound.delete(NAME, force=True)


def test_if_digest_is_checked_before_immutability(bound: ImageStore) -> None:
    with pytest.raises(ImageNotFound, match=f"it points at {digest(1)}"):
        bound.delete(NAME, if_digest=digest(2))
    bound.delete(NAME, if_digest=digest(1), force=True)
    assert bound.history(NAME)[-1].forced is True


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.register(NAME, descriptor(1), immutable="yes"), "immutable"),
        (lambda s: s.register(NAME, descriptor(1), immutable=1), "immutable"),
        (lambda s: s.delete(NAME, force=None), "force"),
    ],
)
def test_the_flags_must_be_booleans(
    store: ImageStore, call: Callable[[ImageStore], Any], field: str, log_rows: Rows
) -> None:
    with pytest.raises(InvalidArgument) as bad:
        call(store)
    assert bad.value.field == field
    assert "must be True or False" in str(bad.value)
    assert log_rows() == []


def test_a_batch_binds_names_and_is_refused_whole_when_it_would_move_one(
    store: ImageStore, log_rows: Rows
) -> None:
    images = store.register_many(
        [
            {"name": "app:1", "target": descriptor(1), "immutable": True},
            {"name": "app:2", "target": descriptor(2)},
        ]
    )
    assert [i.immutable for i in images] == [True, False]
    rows = log_rows()
    with pytest.raises(ImmutableImage, match='"app:1" .* immutable at'):
        store.register_many(
            [("app:2", descriptor(3)), {"name": "app:1", "target": descriptor(4)}]
        )
    assert log_rows() == rows
    with pytest.raises(InvalidArgument, match=r"items\[0\].immutable"):
        store.register_many([{"name": "a", "target": descriptor(1), "immutable": 0}])


def test_replay_rebuild_and_verify_agree_on_the_flag(
    store: ImageStore, run_sql: Callable[[str], None]
) -> None:
    store.register("bound:1", descriptor(1), immutable=True)
    store.register("plain:1", descriptor(2))
    store.register("gone:1", descriptor(3), immutable=True)
    store.delete("gone:1", force=True)
    store.register("back:1", descriptor(4), immutable=True)
    store.delete("back:1", force=True)
    store.register("back:1", descriptor(4))
    listed = {(i.namespace, i.name): i for i in store.list()}
    assert {name: i.immutable for (_, name), i in listed.items()} == {
        "back:1": True,
        "bound:1": True,
        "plain:1": False,
    }
    assert store.replay() == listed
    assert store.rebuild() == 7
    assert {(i.namespace, i.name): i for i in store.list()} == listed
    assert store.verify().events == 7
    # The tombstone keeps the binding through a rebuild too.
    with pytest.raises(ImmutableImage, match=f"immutable at {digest(3)}"):
        store.register("gone:1", descriptor(5))

    run_sql("UPDATE images SET immutable = NOT immutable WHERE name = 'bound:1'")
    with pytest.raises(IntegrityError) as differs:
        store.verify()
    assert differs.value.problem == "view differs from the fold"
    assert "'bound:1'" in str(differs.value)
    assert "immutable is" in str(differs.value)


@pytest.mark.parametrize(
    ("topic", "fields", "problem"),
    [
        ("Registered", {"immutable": "true"}, "expected true or false, found str"),
        ("Registered", {"immutable": 1}, "expected true or false, found int"),
        ("Registered", {"forced": True}, "fields are not those of"),
        ("Deleted", {"forced": None}, "expected true or false, found NoneType"),
        ("Deleted", {"immutable": True}, "fields are not those of"),
    ],
)
def test_a_stored_flag_that_is_not_a_boolean_is_damage(
    topic: str, fields: dict[str, Any], problem: str
) -> None:
    common = {
        "actor": "a",
        "name": "app:1",
        "namespace": "default",
        "reason": None,
        "timestamp": "2026-11-28T21:31:21.052266+00:00",
    }
    if topic == "Registered":
        common |= {"labels": {}, "target": descriptor(1)}
    stored = StoredEvent(
        originator_id="0" * 32,
        originator_version=1,
        topic=f"imageledger:Image.{topic}",
        state=json.dumps(common | fields).encode(),
    )
    with pytest.raises(StoreError, match=f"is damaged: .*{problem}"):
        LedgerMapper().to_domain_event(stored)


def test_a_stored_flag_false_reads_as_absent() -> None:
    state = {
        "actor": "a",
        "name": "app:1",
        "namespace": "default",
        "reason": None,
        "timestamp": "2026-11-28T21:31:21.052266+00:00",
        "labels": {},
        "target": {"mediaType": MANIFEST, "digest": digest(1), "size": 1},
    }
    mapper = LedgerMapper()
    events = [
        mapper.to_domain_event(
            StoredEvent(
                originator_id="0" * 32,
                originator_version=1,
                topic="imageledger:Image.Registered",
                state=json.dumps(state | extra).encode(),
            )
        )
        for extra in ({}, {"immutable": False}, {"immutable": True})
    ]
    assert all(isinstance(e, ImageName.Registered) for e in events)
    assert [e.immutable for e in events] == [False, False, True]
    assert events[0] == events[1]
    # Re-encoded, the unflagged events are the bytes the store always wrote.
    assert b"immutable" not in mapper.to_stored_event(events[1]).state
    assert b'"immutable":true' in mapper.to_stored_event(events[2]).state
