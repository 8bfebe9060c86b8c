"""Properties of the audit queries over random histories, on both backends.

`as_of` reads the audit index and `replay` the raw log: their agreement at
every point is the strong check. `log` with any filters must equal the full
log filtered in Python.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import descriptor, digest
from imageledger import ImageStore
from imageledger.errors import ImageNotFound

NAMESPACES = ["default", "team-a"]
NAMES = ["app:1", "app:2", "base"]
ACTORS = ["alice", "bob"]

operation = st.tuples(
    st.sampled_from(["register", "register", "delete"]),
    st.sampled_from(NAMESPACES),
    st.sampled_from(NAMES),
    st.integers(min_value=0, max_value=2),  # which target
    st.sampled_from([{}, {"tier": "1"}]),
    st.sampled_from(ACTORS),
)
_FRESH_STORES = [HealthCheck.function_scoped_fixture]


def run(store: ImageStore, ops: list[tuple[Any, ...]]) -> None:
    for kind, namespace, name, target, labels, actor in ops:
        if kind == "register":
            store.register(
                name, descriptor(target), labels, namespace=namespace, actor=actor
            )
        else:
            with contextlib.suppress(ImageNotFound):
                store.delete(name, namespace=namespace, actor=actor)


@settings(max_examples=30, deadline=None, suppress_health_check=_FRESH_STORES)
@given(ops=st.lists(operation, max_size=25), data=st.data())
def test_as_of_equals_replay_until_any_position_or_moment(
    new_location: Callable[[], str], ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    with ImageStore.open(new_location()) as store:
        run(store, ops)
        moments = [entry.timestamp for entry in store.log()]
        points: list[int | datetime] = list(range(len(moments) + 2))
        nudge = timedelta(microseconds=1)
        points += [m + d for m in moments for d in (-nudge, timedelta(0), nudge)]
        for when in data.draw(st.lists(st.sampled_from(points), max_size=6)):
            past = store.as_of(when)
            folded = {
                (image.namespace, image.name): image
                for namespace in NAMESPACES
                for image in past.list(namespace=namespace)
            }
            assert folded == store.replay(until=when)
            for (namespace, name), image in folded.items():
                assert past.get(name, namespace=namespace) == image


log_filters = st.fixed_dictionaries(
    {},
    optional={
        "actor": st.sampled_from(ACTORS),
        "name": st.sampled_from(NAMES),
        "namespace": st.sampled_from(NAMESPACES),
        "digest": st.sampled_from([digest(n) for n in range(3)]),
        "kind": st.sampled_from(["registered", "deleted"]),
        "after": st.integers(min_value=0, max_value=30),
        "since": st.integers(min_value=0, max_value=30),
        "until": st.integers(min_value=0, max_value=30),
        "limit": st.integers(min_value=0, max_value=10),
    },
)


@settings(max_examples=30, deadline=None, suppress_health_check=_FRESH_STORES)
@given(ops=st.lists(operation, max_size=25), queries=st.lists(log_filters, max_size=8))
def test_log_with_any_filters_equals_the_full_log_filtered(
    new_location: Callable[[], str],
    ops: list[tuple[Any, ...]],
    queries: list[dict[str, Any]],
) -> None:
    with ImageStore.open(new_location()) as store:
        run(store, ops)
        everything = list(store.log())
        for query in queries:
            expected = [e for e in everything if _matches(e, query)]
            if "limit" in query:
                expected = expected[: query["limit"]]
            assert list(store.log(**query)) == expected


def _matches(entry: Any, query: dict[str, Any]) -> bool:
    checks = {
        "actor": lambda v: entry.actor == v,
        "name": lambda v: entry.name == v,
        "namespace": lambda v: entry.namespace == v,
        "digest": lambda v: entry.target is not None and entry.target.digest == v,
        "kind": lambda v: entry.kind == v,
        "after": lambda v: entry.position > v,
        "since": lambda v: entry.position >= v,
        "until": lambda v: entry.position <= v,
        "limit": lambda v: True,
    }
    return all(checks[key](value) for key, value in query.items())
