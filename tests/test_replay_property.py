"""Replay of the raw log equals the live view, whatever the history."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import descriptor
from imageledger import Image, ImageStore
from imageledger.errors import Conflict, ImageNotFound

NAMESPACES = ["default", "team-a"]
NAMES = ["app:1", "app:2", "base", "docker.io/library/alpine:3.20"]

operation = st.tuples(
    st.sampled_from(["register", "register", "register", "delete"]),
    st.sampled_from(NAMESPACES),
    st.sampled_from(NAMES),
    st.integers(min_value=0, max_value=3),  # which target
    st.sampled_from([{}, {"team": "a"}, {"team": "b", "tier": "1"}]),
)


def view(store: ImageStore) -> dict[tuple[str, str], Image]:
    return {
        (image.namespace, image.name): image
        for namespace in NAMESPACES
        for image in store.list(namespace=namespace)
    }


def apply(
    store: ImageStore,
    model: dict[tuple[str, str], tuple[str, dict[str, str]]],
    op: tuple[str, str, str, int, dict[str, str]],
) -> None:
    """Apply one operation to the store and to a dict model of what it should hold."""
    kind, namespace, name, target, labels = op
    key = (namespace, name)
    if kind == "register":
        store.register(name, descriptor(target), labels, namespace=namespace)
        model[key] = (descriptor(target)["digest"], labels)
    else:
        try:
            store.delete(name, namespace=namespace)
        except ImageNotFound:
            assert key not in model
        else:
            del model[key]


def check(
    store: ImageStore, model: dict[tuple[str, str], tuple[str, dict[str, str]]]
) -> None:
    current = view(store)
    assert store.replay() == current
    assert {key: (i.target.digest, i.labels) for key, i in current.items()} == model


# Each example makes a store of its own with `new_location`, so sharing the
# fixture between examples is what is wanted.
_FRESH_STORES = [HealthCheck.function_scoped_fixture]


@settings(max_examples=60, deadline=None, suppress_health_check=_FRESH_STORES)
@given(ops=st.lists(operation, max_size=40))
def test_replay_equals_the_view_after_any_history(
    new_location: Callable[[], str],
    ops: list[tuple[str, str, str, int, dict[str, str]]],
) -> None:
    with ImageStore.open(new_location()) as store:
        model: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        for op in ops:
            apply(store, model, op)
        check(store, model)


@settings(max_examples=25, deadline=None, suppress_health_check=_FRESH_STORES)
@given(ops=st.lists(operation, max_size=30), cut=st.integers(min_value=0, max_value=40))
def test_replay_until_a_position_equals_the_view_at_that_moment(
    new_location: Callable[[], str],
    ops: list[tuple[str, str, str, int, dict[str, str]]],
    cut: int,
) -> None:
    with ImageStore.open(new_location()) as store:
        model: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
        snapshots = {0: view(store)}
        for op in ops:
            apply(store, model, op)
            snapshots[store._log.head()] = view(store)
        position = min(cut, max(snapshots))
        expected = snapshots[max(p for p in snapshots if p <= position)]
        assert store.replay(until=position) == expected


def test_thousands_of_random_operations_replay_and_rebuild_to_the_view(
    location: str, run_sql: Callable[[str], None]
) -> None:
    rng = random.Random(20261128)
    db = location
    model: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
    with ImageStore.open(db) as store:
        for step in range(3000):
            op = (
                rng.choice(["register", "register", "register", "delete"]),
                rng.choice(NAMESPACES),
                rng.choice(NAMES + [f"svc/n{i}" for i in range(20)]),
                rng.randrange(6),
                rng.choice([{}, {"step": str(step % 5)}]),
            )
            if op[0] == "register" and rng.random() < 0.1:
                # A compare-and-swap that must fail: it changes nothing.
                with contextlib.suppress(Conflict):
                    store.register(
                        op[2], descriptor(op[3]), namespace=op[1], expect=10**6
                    )
            apply(store, model, op)
        check(store, model)
        before = view(store)
        run_sql("DELETE FROM images")
        store.rebuild()
        assert view(store) == before
    with ImageStore.open(db) as reopened:
        check(reopened, model)
