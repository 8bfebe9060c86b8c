"""Garbage input: whatever a caller passes, only ImageLedgerError comes out, and a
refused call leaves the file exactly as it was.

hypothesis drives every call of the library with the strategies of garbage.py:
names, namespaces, descriptors (JSON of every shape, huge strings, NUL bytes,
lone surrogates, deep nesting), labels, filters, conditions and points in time.
Any other exception fails the test. After every refused call the event rows,
view rows and tracking rows are compared with those before it, and the WAL has
not grown. An accepted call must have written something bounded and readable.
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import garbage
import pytest
from evidence import file_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sizes import GARBAGE_EXAMPLES

from conftest import descriptor
from imageledger import ImageStore, LayoutLimits
from imageledger.domain.descriptor import MAX_DESCRIPTOR_BYTES
from imageledger.domain.labels import (
    ACTOR_MAX_LENGTH,
    LABEL_MAX_BYTES,
    MAX_LABELS,
    REASON_MAX_LENGTH,
)
from imageledger.errors import ImageLedgerError

pytestmark = pytest.mark.reliability

# The most one event can hold: every text at its limit, every character
# escaped by JSON (a control character becomes six bytes: \u0000).
MAX_EVENT_BYTES = 6 * (
    MAX_DESCRIPTOR_BYTES
    + MAX_LABELS * LABEL_MAX_BYTES
    + 4 * (ACTOR_MAX_LENGTH + REASON_MAX_LENGTH)
    + 4096
)

MAX_MESSAGE = 1000  # characters in an error message, whatever the input

SETTINGS = settings(
    max_examples=GARBAGE_EXAMPLES,
    deadline=None,
    database=None,  # falsifying examples can be megabytes; print them, not save
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Call = Callable[[ImageStore], object]


class Ledger:
    """One store file under garbage, and the tally of what it refused."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.store = ImageStore.open(db)
        for n, name in enumerate(garbage.VALID_NAMES):
            self.store.register(name, descriptor(n), {"seeded": "yes"})
        self.store.register("app:1", descriptor(9), namespace="team-a")
        self.tally: Counter[str] = Counter()

    def call(self, call: Call) -> object | None:
        """Run `call`; if it is refused, assert it changed nothing.

        Returns what the call returned, or None when it was refused.
        """
        before = file_rows(self.db), self._wal_size()
        try:
            result = call(self.store)
        except ImageLedgerError as e:
            error = e
        else:
            error = None
        if error is not None:
            self.tally[f"rejected with {type(error).__name__}"] += 1
            assert (file_rows(self.db), self._wal_size()) == before, str(error)
            assert len(str(error)) <= MAX_MESSAGE, str(error)[:MAX_MESSAGE]
            return None
        self.tally["accepted"] += 1
        after = file_rows(self.db)
        for row in after[0][len(before[0][0]) :]:
            assert len(row[4]) <= MAX_EVENT_BYTES
        return result

    def _wal_size(self) -> int:
        wal = Path(f"{self.db}-wal")
        return wal.stat().st_size if wal.exists() else 0

    def report(self, what: str) -> None:
        rejected = sum(n for key, n in self.tally.items() if key != "accepted")
        details = ", ".join(f"{n} {key}" for key, n in sorted(self.tally.items()))
        print(f"garbage {what}: {rejected} rejected inputs tried ({details})")
        with ImageStore.open(self.db) as fresh:
            namespaces = {namespace for namespace, _ in fresh.replay()}
            listed = {
                (image.namespace, image.name): image
                for namespace in namespaces
                for image in fresh.list(namespace=namespace)
            }
            assert listed == fresh.replay()


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = Ledger(tmp_path / "garbage.db")
    try:
        yield opened
    finally:
        opened.store.close()


REGISTER_VALID = {
    "name": garbage.valid_names,
    "target": garbage.valid_descriptors,
    "labels": garbage.valid_labels,
    "namespace": garbage.valid_namespaces,
    "actor": garbage.valid_actors,
    "reason": garbage.valid_reasons,
    "expect": garbage.valid_expects,
    "immutable": st.booleans(),
}
REGISTER_JUNK = {
    "name": garbage.names,
    "target": garbage.descriptors,
    "labels": garbage.labels,
    "namespace": garbage.namespaces,
    "actor": garbage.actors,
    "reason": garbage.reasons,
    "expect": garbage.expects,
    "immutable": garbage.values,
}
DELETE_VALID = {
    "name": garbage.valid_names,
    "namespace": garbage.valid_namespaces,
    "actor": garbage.valid_actors,
    "reason": garbage.valid_reasons,
    "if_digest": st.none(),
    "expect": st.sampled_from([None, 1, 2]),
    "force": st.booleans(),
}
DELETE_JUNK = {
    "name": garbage.names,
    "namespace": garbage.namespaces,
    "actor": garbage.actors,
    "reason": garbage.reasons,
    "if_digest": garbage.digests,
    "expect": garbage.expects,
    "force": garbage.values,
}
READS: dict[str, Callable[..., Call]] = {
    "get": lambda name, namespace, **_: lambda s: s.get(name, namespace=namespace),
    "history": lambda name, namespace, **_: lambda s: s.history(
        name, namespace=namespace
    ),
    "list": lambda namespace, filters, **_: lambda s: list(
        s.list(*filters, namespace=namespace)
    ),
    "replay": lambda until, **_: lambda s: s.replay(until),
    "rebuild": lambda progress, **_: lambda s: s.rebuild(progress),
}
READ_VALID = {
    "read": st.sampled_from(sorted(READS)),
    "name": garbage.valid_names,
    "namespace": garbage.valid_namespaces,
    "filters": st.just([]),
    "until": st.sampled_from([None, 0, 3]),
    "progress": st.none(),
}
READ_JUNK = {
    "name": garbage.names,
    "namespace": garbage.namespaces,
    "filters": garbage.filters,
    "until": garbage.points_in_time,
    "progress": garbage.values,
}


def test_garbage_registers_raise_only_our_errors_and_refusals_write_nothing(
    ledger: Ledger,
) -> None:
    @SETTINGS
    @given(garbage.garbled(REGISTER_VALID, REGISTER_JUNK))
    def register(arguments: dict[str, Any]) -> None:
        name, target = arguments.pop("name"), arguments.pop("target")
        image = ledger.call(lambda s: s.register(name, target, **arguments))
        if image is not None:  # accepted: it reads back as it was returned
            assert ledger.store.get(name, namespace=arguments["namespace"]) == image

    register()
    ledger.report("register")


def test_garbage_deletes_raise_only_our_errors_and_refusals_write_nothing(
    ledger: Ledger,
) -> None:
    @SETTINGS
    @given(garbage.garbled(DELETE_VALID, DELETE_JUNK))
    def delete(arguments: dict[str, Any]) -> None:
        name = arguments.pop("name")
        ledger.call(lambda s: s.delete(name, **arguments))

    delete()
    ledger.report("delete")


def test_garbage_reads_raise_only_our_errors_and_write_nothing(
    ledger: Ledger,
) -> None:
    @SETTINGS
    @given(garbage.garbled(READ_VALID, READ_JUNK))
    def read(arguments: dict[str, Any]) -> None:
        before = file_rows(ledger.db)
        ledger.call(READS[arguments.pop("read")](**arguments))
        assert file_rows(ledger.db) == before  # reads never write, accepted or not

    read()
    ledger.report("reads")


def test_garbage_locations_and_lock_timeouts_raise_only_our_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative garbage paths land here
    existing = tmp_path / "existing.db"
    ImageStore.open(existing).close()
    tally: Counter[str] = Counter()

    @SETTINGS
    @given(
        location=st.one_of(st.just(existing), garbage.texts, garbage.values),
        lock_timeout=garbage.lock_timeouts,
        environment=st.one_of(st.none(), garbage.small_texts),
    )
    def open_(location: Any, lock_timeout: Any, environment: str | None) -> None:
        with monkeypatch.context() as patch:
            if environment is not None:
                with contextlib.suppress(ValueError):  # NUL or surrogates
                    patch.setenv("IMAGELEDGER_LOCK_TIMEOUT", environment)
            try:
                store = ImageStore.open(location, lock_timeout=lock_timeout)
            except ImageLedgerError as e:
                tally[f"rejected with {type(e).__name__}"] += 1
                return
            tally["accepted"] += 1
            store.close()

    open_()
    rejected = sum(n for key, n in tally.items() if key != "accepted")
    print(f"garbage open: {rejected} rejected inputs tried ({dict(tally)})")
    assert os.listdir(tmp_path)  # sanity: the folder was really used


def test_hostile_files_urls_and_archives_are_refused_within_bounds(
    tmp_path: Path,
) -> None:
    """The hostile inputs of the security notes: each refused with our error,
    naming no password, and within the caps (no hang, no unbounded read)."""
    tally: Counter[str] = Counter()

    def refused(call: Callable[[], object], secret: str | None = None) -> None:
        with pytest.raises(ImageLedgerError) as raised:
            call()
        if secret is not None:
            chained, error = [], raised.value
            while isinstance(error, BaseException) and error not in chained:
                chained.append(error)
                error = error.__cause__ or error.__context__
            for piece in secret.removeprefix("pw-").replace("/", " ").split():
                assert all(piece not in str(e) for e in chained), piece
        tally[f"{type(raised.value).__name__}"] += 1

    for url in garbage.HOSTILE_URLS:
        secret = url.split("pw-", 1)[1].rsplit("@", 1)[0].split("/images")[0]
        refused(lambda url=url: ImageStore.open(url), "pw-" + secret)
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    refused(lambda: ImageStore.open(fifo))
    with ImageStore.open(tmp_path / "store.db") as store:
        layout = tmp_path / "layout"
        (layout / "blobs" / "sha256").mkdir(parents=True)
        (layout / "oci-layout").symlink_to("/etc/hostname")
        refused(lambda: store.import_layout(layout))
        archive = tmp_path / "many.tar"
        with tarfile.open(archive, "w") as tar:
            for n in range(20):
                tar.addfile(tarfile.TarInfo(f"m{n}"), io.BytesIO(b""))
        refused(
            lambda: store.import_layout(archive, limits=LayoutLimits(max_members=10))
        )
        long_line = io.BytesIO(b"{" + b" " * 5000 + b"}\n")
        refused(lambda: store.import_log(long_line, max_line_bytes=1024))
    print(
        f"garbage hostile files and URLs: {sum(tally.values())} refused ({dict(tally)})"
    )
