"""A full disk: a write that cannot get space fails cleanly and changes nothing.

The space limit is SQLite's own `PRAGMA max_page_count`, set on the connection
the store writes through (the store's datastore hands out the same pooled
connection to every transaction of a single-threaded caller), so the store runs
its real write path up to the moment SQLite refuses a new page with
SQLITE_FULL, exactly as it does when the file system is full. Raising the limit
again is "space becoming available".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from evidence import file_rows, view

from conftest import descriptor
from imageledger import ImageStore
from imageledger.errors import StoreError

pytestmark = pytest.mark.reliability

SQLITE_MAX_PAGES = 4294967294  # SQLite's own ceiling: no limit in practice
PADDING = {"padding": "x" * 4000}  # a label near containerd's limit: pages fill fast


def set_page_limit(store: ImageStore, extra_pages: int | None) -> int:
    """Let the store's file grow by `extra_pages` pages (None: without limit).

    Returns the limit SQLite reports back on the store's write connection.
    """
    datastore = store._log._factory.datastore
    with datastore.transaction(commit=False) as c:
        c.execute("PRAGMA page_count")
        pages = int(c.fetchone()[0])
        limit = SQLITE_MAX_PAGES if extra_pages is None else pages + extra_pages
        c.execute(f"PRAGMA max_page_count={limit}")
        return int(c.fetchone()[0])


def fill(store: ImageStore, db: Path, acked: list[str]) -> StoreError:
    """Register padded images until one fails; return its error.

    Asserts that the failed call left every row of the file as it was.
    """
    for i in range(10_000):
        before = file_rows(db)
        name = f"fill/app{i}:v1"
        try:
            store.register(name, descriptor(i), PADDING)
        except StoreError as e:
            assert file_rows(db) == before, "a failed write changed the file"
            return e
        acked.append(name)
    pytest.fail("the store never ran out of space")


def test_a_write_that_cannot_get_space_says_disk_full_and_changes_nothing(
    db_path: Path,
) -> None:
    acked: list[str] = []
    with ImageStore.open(db_path) as store:
        for i in range(5):
            store.register(f"app{i}:v1", descriptor(100 + i), {"n": str(i)})
            acked.append(f"app{i}:v1")
        set_page_limit(store, 8)

        error = fill(store, db_path, acked)
        assert str(error).startswith("disk full: the write was not made")
        assert "database or disk is full" in str(error)
        assert len(acked) > 5  # some padded writes fitted before the limit

        # Everything written before is intact and readable, here and elsewhere.
        for reader in (store, ImageStore.open(db_path)):
            assert sorted(image.name for image in reader.list()) == sorted(acked)
            for name in acked:
                assert reader.get(name).version == 1
                assert [e.version for e in reader.history(name)] == [1]
            assert view(reader) == reader.replay()
            if reader is not store:
                reader.close()

        # A rebuild needs a new table: it fails the same way, the view stays.
        before = file_rows(db_path)
        with pytest.raises(StoreError, match="^disk full"):
            store.rebuild()
        assert file_rows(db_path) == before
        assert view(store) == store.replay()

        # Space again: the refused write and a rebuild now go through.
        assert set_page_limit(store, None) == SQLITE_MAX_PAGES
        refused = f"fill/app{len(acked) - 5}:v1"
        assert store.register(refused, descriptor(7), PADDING).version == 1
        assert store.rebuild() == len(acked) + 1
    with ImageStore.open(db_path) as store:
        assert sorted(image.name for image in store.list()) == sorted([*acked, refused])
        assert view(store) == store.replay()


def test_retargets_fail_cleanly_when_full_and_deletes_succeed_with_space(
    db_path: Path,
) -> None:
    acked: list[str] = []
    with ImageStore.open(db_path) as store:
        set_page_limit(store, 4)
        fill(store, db_path, acked)
        # Whatever still fits is written whole; whatever does not, not at all.
        outcomes = []
        for name in acked:
            before = file_rows(db_path)
            try:
                store.register(name, descriptor(9), PADDING | {"more": "y" * 90})
                outcomes.append("retargeted")
            except StoreError as e:
                outcomes.append(str(e).split(":")[0])
                assert file_rows(db_path) == before
        assert set(outcomes) <= {"retargeted", "disk full"}
        assert "disk full" in outcomes
        set_page_limit(store, None)
        for name in acked:
            store.delete(name)
        assert list(store.list()) == []
        assert store.replay() == {}
