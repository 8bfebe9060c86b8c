"""Audit and time travel on a scripted history with known answers, both backends.

The history (position: what happens):
  1 default/app:prod -> d1 by alice      5 default/app:dev labels change by alice
  2 default/app:dev  -> d1 by bob        6 default/app:prod deleted by carol
  3 team/app:prod    -> d2 by carol      7 default/app:prod -> d1 again by alice
  4 default/app:prod -> d2 by bob        8 team/app:prod deleted by bob
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from conftest import descriptor, digest
from imageledger import Image, ImageStore
from imageledger.errors import ImageNotFound, InvalidArgument

D1, D2 = digest(1), digest(2)
MICROSECOND = timedelta(microseconds=1)


@pytest.fixture
def scripted(store: ImageStore) -> dict[int, datetime]:
    """The scripted history in `store`; returns each position's timestamp."""
    store.register("app:prod", descriptor(1), actor="alice", reason="first")
    store.register("app:dev", descriptor(1), actor="bob")
    store.register("app:prod", descriptor(2), namespace="team", actor="carol")
    store.register("app:prod", descriptor(2), actor="bob", reason="promote")
    store.register("app:dev", descriptor(1), {"tier": "2"}, actor="alice")
    store.delete("app:prod", actor="carol", reason="bad build")
    store.register("app:prod", descriptor(1), actor="alice", reason="roll back")
    store.delete("app:prod", namespace="team", actor="bob")
    return {entry.position: entry.timestamp for entry in store.log()}


def positions(entries: object) -> list[int]:
    return [entry.position for entry in entries]  # type: ignore[attr-defined]


def state(store: ImageStore, when: int | datetime) -> dict[tuple[str, str], Image]:
    past = store.as_of(when)
    return {
        (image.namespace, image.name): image
        for namespace in ("default", "team")
        for image in past.list(namespace=namespace)
    }


def test_log_without_arguments_is_every_event_in_order(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    entries = list(store.log())
    assert positions(entries) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [(e.namespace, e.name, e.kind, e.actor) for e in entries[3:6]] == [
        ("default", "app:prod", "registered", "bob"),
        ("default", "app:dev", "registered", "alice"),
        ("default", "app:prod", "deleted", "carol"),
    ]
    assert entries[3].target is not None and entries[3].target.digest == D2
    assert entries[3].reason == "promote"
    assert entries[5].target is None and entries[5].reason == "bad build"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"actor": "bob"}, [2, 4, 8]),
        ({"actor": "nobody"}, []),
        ({"digest": D1}, [1, 2, 5, 7]),
        ({"digest": D2}, [3, 4]),
        ({"kind": "deleted"}, [6, 8]),
        ({"kind": "registered", "actor": "alice"}, [1, 5, 7]),
        ({"namespace": "team"}, [3, 8]),
        ({"name": "app:prod"}, [1, 3, 4, 6, 7, 8]),
        ({"name": "app:prod", "namespace": "default"}, [1, 4, 6, 7]),
        ({"after": 6}, [7, 8]),
        ({"after": 0}, [1, 2, 3, 4, 5, 6, 7, 8]),
        ({"after": 8}, []),
        ({"since": 3, "until": 5}, [3, 4, 5]),
        ({"since": 8}, [8]),
        ({"until": 0}, []),
        ({"until": 100}, [1, 2, 3, 4, 5, 6, 7, 8]),
        ({"limit": 2}, [1, 2]),
        ({"limit": 0}, []),
        ({"actor": "bob", "limit": 2}, [2, 4]),
        ({"digest": D1, "after": 2, "until": 6}, [5]),
    ],
)
def test_log_filters_select_the_scripted_events(
    store: ImageStore,
    scripted: dict[int, datetime],
    arguments: dict[str, object],
    expected: list[int],
) -> None:
    assert positions(store.log(**arguments)) == expected  # type: ignore[arg-type]


def test_log_since_and_until_a_timestamp_include_the_event_at_it(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    at = scripted[3]
    assert positions(store.log(since=at)) == [3, 4, 5, 6, 7, 8]
    assert positions(store.log(until=at)) == [1, 2, 3]
    assert positions(store.log(since=at + MICROSECOND)) == [4, 5, 6, 7, 8]
    assert positions(store.log(until=at - MICROSECOND)) == [1, 2]
    assert positions(store.log(since=at, until=at)) == [3]
    naive = at.replace(tzinfo=None)  # naive datetimes are UTC
    assert positions(store.log(until=naive)) == [1, 2, 3]


def test_as_of_a_position_is_the_state_right_after_that_event(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    assert state(store, 0) == {}
    first = store.as_of(1).get("app:prod")
    assert (first.target.digest, first.version, first.created_at) == (
        D1,
        1,
        scripted[1],
    )
    retagged = store.as_of(4).get("app:prod")
    assert (retagged.target.digest, retagged.version) == (D2, 2)
    assert (retagged.created_at, retagged.updated_at) == (scripted[1], scripted[4])
    assert store.as_of(5).get("app:dev").labels == {"tier": "2"}
    assert store.as_of(4).get("app:dev").labels == {}
    with pytest.raises(ImageNotFound, match="did not exist at log position 6"):
        store.as_of(6).get("app:prod")
    again = store.as_of(7).get("app:prod")
    assert (again.target.digest, again.version, again.created_at) == (
        D1,
        4,
        scripted[7],
    )
    assert store.as_of(7).get("app:prod", namespace="team").target.digest == D2
    with pytest.raises(ImageNotFound):
        store.as_of(8).get("app:prod", namespace="team")


def test_as_of_a_timestamp_includes_the_event_at_it(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    assert state(store, scripted[4]) == state(store, 4)
    assert state(store, scripted[4] - MICROSECOND) == state(store, 3)
    assert state(store, scripted[1] - timedelta(days=1)) == {}  # before the first
    assert state(store, scripted[8] + timedelta(days=1)) == state(store, 8)
    naive = scripted[4].replace(tzinfo=None)
    assert state(store, naive) == state(store, 4)


def test_as_of_after_the_last_event_is_the_current_view(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    current = {
        (image.namespace, image.name): image
        for namespace in ("default", "team")
        for image in store.list(namespace=namespace)
    }
    assert state(store, 8) == current
    assert state(store, 10**30) == current
    assert list(store.as_of(8).list()) == list(store.list())


@pytest.mark.parametrize("position", range(10))
def test_as_of_every_position_equals_replay_until_it(
    store: ImageStore, scripted: dict[int, datetime], position: int
) -> None:
    assert state(store, position) == store.replay(until=position)
    if position in scripted:
        moment = scripted[position]
        assert state(store, moment) == store.replay(until=moment)
        before = moment - MICROSECOND
        assert state(store, before) == store.replay(until=before)


def test_where_gives_every_interval_a_digest_was_carried(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    intervals = [
        (i.namespace, i.name, i.since_position, i.until_position, i.since, i.until)
        for i in store.where(D1)
    ]
    assert intervals == [
        ("default", "app:prod", 1, 4, scripted[1], scripted[4]),
        # The change of labels at 5 does not end the interval that began at 2.
        ("default", "app:dev", 2, None, scripted[2], None),
        ("default", "app:prod", 7, None, scripted[7], None),
    ]
    assert [
        (i.namespace, i.since_position, i.until_position) for i in store.where(D2)
    ] == [
        ("team", 3, 8),
        ("default", 4, 6),
    ]
    assert [i.since_position for i in store.where(D2, namespace="team")] == [3]
    assert store.where(digest(99)) == []


def test_diff_names_what_was_added_removed_and_retargeted(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    def names(images: list[Image]) -> list[tuple[str, str]]:
        return [(image.namespace, image.name) for image in images]

    changes = store.diff(1, 4)
    assert names(changes.added) == [("default", "app:dev"), ("team", "app:prod")]
    assert names(changes.removed) == []
    assert [(a.target.digest, b.target.digest) for a, b in changes.retargeted] == [
        (D1, D2)
    ]
    later = store.diff(4, 6)
    assert (names(later.added), names(later.removed), later.retargeted) == (
        [],
        [("default", "app:prod")],
        [],
    )
    # Deleted and registered again at the same digest: no change at all.
    assert store.diff(1, 7, namespace="default").retargeted == []
    assert names(store.diff(1, 7, namespace="default").added) == [
        ("default", "app:dev")
    ]
    # Labels only changed between 4 and 5: no change shown.
    same = store.diff(4, 5)
    assert (same.added, same.removed, same.retargeted) == ([], [], [])
    # Added then removed between the two points: absent at both.
    assert store.diff(0, 8, namespace="team").added == []
    backwards = store.diff(scripted[4], scripted[1])
    assert [(a.target.digest, b.target.digest) for a, b in backwards.retargeted] == [
        (D2, D1)
    ]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: list(s.log(kind="moved")), "kind"),
        (lambda s: list(s.log(limit=-1)), "limit"),
        (lambda s: list(s.log(after=True)), "after"),
        (lambda s: list(s.log(since="yesterday")), "since"),
        (lambda s: list(s.log(digest="sha256:short")), "digest"),
        (lambda s: list(s.log(name="UPPER:case")), "name"),
        (lambda s: list(s.log(namespace="no/slash")), "namespace"),
        (lambda s: s.as_of(-1), "when"),
        (lambda s: s.as_of(1.5), "when"),
        (lambda s: s.where("nope"), "digest"),
        (lambda s: s.diff(0, "later"), "when"),
        (lambda s: s.as_of(0).get("Bad Name"), "name"),
    ],
)
def test_bad_audit_arguments_raise_invalid_argument_naming_the_field(
    store: ImageStore, call: object, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        call(store)  # type: ignore[operator]
    assert caught.value.field == field


def test_the_audit_index_survives_rebuild_and_a_reopen(
    location: str, scripted: dict[int, datetime], store: ImageStore
) -> None:
    before = list(store.log())
    where = store.where(D1)
    assert store.rebuild() == 8
    assert list(store.log()) == before
    assert store.where(D1) == where
    with ImageStore.open(location) as reopened:
        assert list(reopened.log()) == before
        assert reopened.verify().views == ("current_view", "audit_index")


def test_a_lost_audit_index_is_refolded_from_the_log_at_open(
    location: str,
    scripted: dict[int, datetime],
    store: ImageStore,
    run_sql: object,
) -> None:
    before = list(store.log())
    run_sql("DELETE FROM audit_index")  # type: ignore[operator]
    run_sql(
        "UPDATE tracking SET notification_id=0 WHERE application_name='audit_index'"
    )  # type: ignore[operator]
    with ImageStore.open(location) as reopened:
        assert list(reopened.log()) == before
        reopened.verify()


def test_as_of_list_takes_the_filters_list_takes(
    store: ImageStore, scripted: dict[int, datetime]
) -> None:
    past = store.as_of(5)
    assert [i.name for i in past.list("name==app:dev")] == ["app:dev"]
    assert [i.name for i in past.list(f"target.digest=={D2}")] == ["app:prod"]
    assert [i.name for i in past.list("labels.tier==2")] == ["app:dev"]
    assert [i.name for i in store.as_of(4).list("labels.tier==2")] == []
    assert [i.name for i in past.list("name==app:dev", "name~=prod")] == [
        "app:dev",
        "app:prod",
    ]
    with pytest.raises(InvalidArgument, match="position"):
        past.list("name==")


def test_log_and_where_show_write_once_names(store: ImageStore) -> None:
    store.register("app:1.4.2", descriptor(1), actor="ci", immutable=True)
    store.register("app:1.4.2", descriptor(1), {"scan": "ok"}, actor="ci")
    store.delete("app:1.4.2", actor="ops", force=True)
    store.register("app:1.4.3", descriptor(1), actor="ci")
    entries = list(store.log(name="app:1.4.2"))
    assert [(e.kind, e.immutable, e.forced) for e in entries] == [
        ("registered", True, False),
        ("registered", True, False),
        ("deleted", True, True),
    ]
    assert [
        (i.name, i.since_position, i.until_position, i.immutable)
        for i in store.where(D1)
    ] == [
        ("app:1.4.2", 1, 3, True),
        ("app:1.4.3", 4, None, False),
    ]
    assert store.as_of(2).get("app:1.4.2").immutable is True
    assert state(store, 4) == store.replay(until=4)
