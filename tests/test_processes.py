"""Several OS processes on one store file: visibility, concurrent upserts, CAS.

Each worker is a real `python tests/process_worker.py` process with its own
ImageStore. Workers that must overlap open the store first, print READY and wait
for a line on stdin, so the test releases them together instead of sleeping.
"""

from __future__ import annotations

import json
import select
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import descriptor, digest
from imageledger import ImageStore
from imageledger.errors import ImageNotFound

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().with_name("process_worker.py")
TIMEOUT = 120.0  # seconds any one worker may take before it counts as hung
READY = "READY"
NOT_FOUND = "NOTFOUND"

WORKERS = 4
UPSERTS_PER_WORKER = 250
SHARED_NAMES = [f"registry.example/team/app{i}:latest" for i in range(10)]
INCREMENTS_PER_WORKER = 50
BATCHES_PER_WORKER = 25
COUNTER_NAME = "registry.example/team/counter:latest"


@dataclass(frozen=True)
class Ack:
    """One write a worker saw acknowledged, as it printed it."""

    worker: int
    seq: int
    name: str
    version: int
    digest: str
    labels: dict[str, str]


class Workers:
    """Starts worker processes in `cwd` and kills, at the end, any still running."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[bytes]] = []

    def run(self, *args: str | Path) -> list[str]:
        """Run one worker to its end; return its stdout lines."""
        command = [sys.executable, str(WORKER), *map(str, args)]
        done = subprocess.run(
            command, cwd=self.cwd, capture_output=True, text=True, timeout=TIMEOUT
        )
        assert done.returncode == 0, f"{command} failed:\n{done.stderr}"
        return done.stdout.splitlines()

    def start_gated(self, *args: str | Path) -> GatedWorker:
        """Start a worker with --gate; return once it has printed READY."""
        command = [sys.executable, str(WORKER), *map(str, args), "--gate"]
        process = subprocess.Popen(
            command,
            cwd=self.cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # raw pipes: readline reads no further than the line
        )
        self.started.append(process)
        worker = GatedWorker(command, process)
        worker.before = worker.read_until_ready()
        return worker

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait()


@dataclass
class GatedWorker:
    command: list[str]
    process: subprocess.Popen[bytes]
    before: list[str] | None = None  # lines printed before READY

    def read_until_ready(self) -> list[str]:
        assert self.process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        lines: list[str] = []
        while True:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            if not readable:
                self.process.kill()
                pytest.fail(f"{self.command} printed no {READY} in {TIMEOUT} s")
            line = self.process.stdout.readline().decode()
            if not line:  # EOF: the worker died before getting ready
                _, err = self.process.communicate(timeout=TIMEOUT)
                pytest.fail(f"{self.command} exited before {READY}:\n{err.decode()}")
            if line.strip() == READY:
                return lines
            lines.append(line.strip())

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"go\n")  # raw pipe: sent now; finish() closes it

    def finish(self) -> list[str]:
        """Wait for the worker's end; return the lines it printed after READY."""
        try:
            out, err = self.process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
            pytest.fail(
                f"{self.command} still running after {TIMEOUT} s:\n{err.decode()}"
            )
        assert self.process.returncode == 0, f"{self.command} failed:\n{err.decode()}"
        return out.decode().splitlines()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


def release_together(gated: list[GatedWorker]) -> list[list[str]]:
    """Release every (ready) worker, then wait for each; return their outputs."""
    for worker in gated:
        worker.release()
    return [worker.finish() for worker in gated]


def acks_of(worker: int, lines: list[str]) -> list[Ack]:
    acks = []
    for seq, line in enumerate(lines):
        printed: dict[str, Any] = json.loads(line)
        acks.append(Ack(worker=worker, seq=seq, **printed))
    return acks


def test_a_child_process_write_is_seen_by_a_store_opened_before_it(
    workers: Workers, location: str
) -> None:
    name = "registry.example/team/app:v1"
    with ImageStore.open(location) as store:
        with pytest.raises(ImageNotFound):
            store.get(name)  # the parent's connection has read the store before
        assert list(store.list()) == []

        printed = json.loads(workers.run("register", location, name, "7")[0])

        image = store.get(name)
        assert printed == {
            "name": name,
            "version": 1,
            "digest": digest(7),
            "labels": {"n": "7"},
        }
        assert (image.target.digest, image.version, image.labels) == (
            digest(7),
            1,
            {"n": "7"},
        )
        assert [i.name for i in store.list()] == [name]
        assert [e.version for e in store.history(name)] == [1]


def test_a_parent_write_is_seen_by_a_child_process_that_opened_before_it(
    workers: Workers, location: str
) -> None:
    name = "registry.example/team/app:v2"
    with ImageStore.open(location) as store:
        child = workers.start_gated("get", location, name)
        assert child.before == [NOT_FOUND]  # the child's store has read it already

        store.register(name, descriptor(3))
        child.release()

        assert child.finish() == [digest(3)]


def test_concurrent_upserts_lose_no_acknowledged_write(
    workers: Workers, location: str, log_rows: Callable[[], list[tuple[Any, ...]]]
) -> None:
    ImageStore.open(location).close()  # create it once, not in a race of four
    gated = [
        workers.start_gated(
            "upserts", location, str(w), str(UPSERTS_PER_WORKER), *SHARED_NAMES
        )
        for w in range(WORKERS)
    ]
    outputs = release_together(gated)
    acks = [ack for w, lines in enumerate(outputs) for ack in acks_of(w, lines)]

    # Every register was acknowledged, with the labels asked for, and each one
    # wrote a version of its own (the labels make every write a change).
    for w, lines in enumerate(outputs):
        assert len(lines) == UPSERTS_PER_WORKER, f"worker {w} printed {len(lines)} acks"
    assert all(a.labels == {"writer": str(a.worker), "seq": str(a.seq)} for a in acks)
    acked = Counter((a.name, a.version) for a in acks)
    assert [key for key, times in acked.items() if times > 1] == []

    # A worker's later write to a name comes after its earlier one.
    last_seen: dict[tuple[int, str], int] = {}
    for ack in acks:
        key = (ack.worker, ack.name)
        assert ack.version > last_seen.get(key, 0), ack
        last_seen[key] = ack.version

    with ImageStore.open(location) as store:
        histories = {name: store.history(name) for name in SHARED_NAMES}
        for name, history in histories.items():
            versions = [entry.version for entry in history]
            assert versions == list(range(1, len(history) + 1)), name
            positions = [entry.position for entry in history]
            assert positions == sorted(positions), f"{name}: log order is not versions"
            assert all(entry.kind == "registered" for entry in history)

        for ack in acks:
            entry = histories[ack.name][ack.version - 1]
            assert (entry.target.digest if entry.target else None) == ack.digest, ack
            assert entry.labels == ack.labels, ack

        all_positions = [e.position for h in histories.values() for e in h]
        assert len(set(all_positions)) == len(all_positions)
        assert len(all_positions) == len(acks) == WORKERS * UPSERTS_PER_WORKER
        assert len(log_rows()) == len(acks)

        listed = {(image.namespace, image.name): image for image in store.list()}
        assert sorted(name for _, name in listed) == sorted(SHARED_NAMES)
        for (_, name), image in listed.items():
            head = histories[name][-1]
            assert image.version == head.version, name
            assert image.target == head.target, name
            assert image.labels == head.labels, name
        assert store.replay() == listed
        # Four processes interleaving writes still left one unbroken chain.
        assert store.verify().events == len(acks)


def test_concurrent_batches_on_the_same_names_are_each_applied_whole(
    workers: Workers, db_path: Path
) -> None:
    # Every batch touches every shared name, so batches running at once
    # conflict: each must retry as a whole and land as one block of the log.
    ImageStore.open(db_path).close()
    gated = [
        workers.start_gated(
            "batches", db_path, str(w), str(BATCHES_PER_WORKER), *SHARED_NAMES
        )
        for w in range(WORKERS)
    ]
    outputs = release_together(gated)
    assert [len(lines) for lines in outputs] == [BATCHES_PER_WORKER] * WORKERS

    with ImageStore.open(db_path) as store:
        histories = {name: store.history(name) for name in SHARED_NAMES}
        by_position = {e.position: e for h in histories.values() for e in h}
        assert sorted(by_position) == list(range(1, len(by_position) + 1))
        assert len(by_position) == WORKERS * BATCHES_PER_WORKER * len(SHARED_NAMES)
        for w, lines in enumerate(outputs):
            for seq, line in enumerate(lines):
                images = json.loads(line)
                labels = {"writer": str(w), "seq": str(seq)}
                assert [i["name"] for i in images] == SHARED_NAMES
                assert all(i["labels"] == labels for i in images)
                # The batch's events sit next to each other, in item order.
                entries = [histories[i["name"]][i["version"] - 1] for i in images]
                assert all(e.labels == labels for e in entries)
                positions = [e.position for e in entries]
                first = positions[0]
                assert positions == list(range(first, first + len(SHARED_NAMES)))
        # The last batch in the log is what every name points at now.
        last = by_position[max(by_position)].labels
        assert all(store.get(name).labels == last for name in SHARED_NAMES)
        assert store.replay() == {(i.namespace, i.name): i for i in store.list()}


MIXED_PER_WORKER = 1_000
MIXED_NAMES = [f"registry.example/team/svc{i}:prod" for i in range(12)]


def test_concurrent_retargets_and_deletes_keep_every_acknowledged_write(
    workers: Workers, location: str, log_rows: Callable[[], list[tuple[Any, ...]]]
) -> None:
    ImageStore.open(location).close()
    gated = [
        workers.start_gated(
            "mixed", location, str(w), str(MIXED_PER_WORKER), *MIXED_NAMES
        )
        for w in range(WORKERS)
    ]
    outputs = release_together(gated)
    assert [len(lines) for lines in outputs] == [MIXED_PER_WORKER] * WORKERS
    acked: dict[tuple[str, str], dict[str, Any]] = {}
    for w, lines in enumerate(outputs):
        for line in lines:
            op = json.loads(line)
            if op["op"] == "register" or op["deleted"]:
                acked[(f"w{w}", str(op["seq"]))] = op

    with ImageStore.open(location) as store:
        histories = {name: store.history(name) for name in MIXED_NAMES}
        logged = {(e.actor, e.reason): e for h in histories.values() for e in h}
        # Exactly the acknowledged writes are in the log, each as it was acked.
        assert set(logged) == set(acked)
        for key, op in acked.items():
            entry = logged[key]
            kind = "registered" if op["op"] == "register" else "deleted"
            assert (entry.name, entry.kind) == (op["name"], kind), key
            if op["op"] == "register":
                assert entry.version == op["version"], key
                assert entry.target is not None and entry.target.digest == op["digest"]
        for name, history in histories.items():
            versions = [e.version for e in history]
            assert versions == list(range(1, len(history) + 1)), name
        positions = [e.position for h in histories.values() for e in h]
        assert len(set(positions)) == len(positions) == len(acked) == len(log_rows())

        listed = {(image.namespace, image.name): image for image in store.list()}
        assert store.replay() == listed


def test_concurrent_compare_and_swap_increments_lose_no_update(
    workers: Workers, location: str
) -> None:
    ImageStore.open(location).close()
    gated = [
        workers.start_gated(
            "increments", location, COUNTER_NAME, str(INCREMENTS_PER_WORKER)
        )
        for _ in range(WORKERS)
    ]
    outputs = release_together(gated)
    succeeded = [int(lines[0]) for lines in outputs]
    assert succeeded == [INCREMENTS_PER_WORKER] * WORKERS
    total = sum(succeeded)

    with ImageStore.open(location) as store:
        image = store.get(COUNTER_NAME)
        assert image.labels == {"counter": str(total)}
        assert image.version == total
        assert image.target.digest == digest(total)
        history = store.history(COUNTER_NAME)
        # Version v holds counter v: each write incremented the one before it.
        assert [(e.version, e.labels) for e in history] == [
            (v, {"counter": str(v)}) for v in range(1, total + 1)
        ]
        assert store.verify().events == total


def test_processes_creating_a_new_store_at_once_all_succeed(tmp_path: Path) -> None:
    # Each round starts four processes on a file that does not exist yet: they
    # race to create it (switch to WAL, create the tables, mark the header).
    for round_ in range(6):
        db = tmp_path / f"new-{round_}.db"
        command = [sys.executable, str(WORKER), "register", str(db)]
        processes = [
            subprocess.Popen(
                [*command, f"app:{i}", str(i)],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(WORKERS)
        ]
        for process in processes:
            _, err = process.communicate(timeout=TIMEOUT)
            assert process.returncode == 0, err
        with ImageStore.open(db) as store:
            assert [image.name for image in store.list()] == [
                f"app:{i}" for i in range(WORKERS)
            ]
            assert store._log.head() == WORKERS
            assert store.verify().events == WORKERS


def test_processes_opening_a_schema_1_store_at_once_link_it_once(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.db"
    with ImageStore.open(db) as store:
        for i in range(20):
            store.register(f"old:{i}", descriptor(i))
        before = store.checkpoint()
    connection = sqlite3.connect(db)
    with connection:
        connection.execute("DROP TABLE event_chain")
        connection.execute("DROP TABLE audit_index")
        connection.execute("DELETE FROM tracking WHERE application_name='audit_index'")
        connection.execute("ALTER TABLE images DROP COLUMN immutable")
        connection.execute("PRAGMA user_version=1")
    connection.close()
    command = [sys.executable, str(WORKER), "register", str(db)]
    processes = [
        subprocess.Popen(
            [*command, f"new:{i}", str(100 + i)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    for process in processes:
        _, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
    with ImageStore.open(db) as store:
        report = store.verify(before)
    assert report.events == 20 + WORKERS


def test_writes_by_another_process_during_a_rebuild_end_up_in_the_view(
    workers: Workers, location: str
) -> None:
    with ImageStore.open(location) as store:
        for i in range(6_000):  # two rebuild batches of 5,000
            store.register(f"seed/app{i % 3000}:v1", descriptor(i))
    # Between the rebuild's batches, another process retargets names the first
    # batch already folded (and one it has not reached) and creates new ones.
    names = ["seed/app0:v1", "seed/app2999:v1", *SHARED_NAMES]
    written: list[list[str]] = []

    def write_from_another_process(done: int, total: int) -> None:
        if not written:
            written.append(workers.run("upserts", location, "7", "30", *names))

    with ImageStore.open(location) as store:
        assert store.rebuild(write_from_another_process) == 6_030
        expected = store.replay()
        assert {(i.namespace, i.name): i for i in store.list()} == expected
        assert len(expected) == 3000 + len(SHARED_NAMES)
        assert store.get("seed/app0:v1").labels["writer"] == "7"
        assert store.verify().events == 6_030
    assert len(written[0]) == 30
