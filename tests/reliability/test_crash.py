"""Crashes: a child process is killed with SIGKILL while it writes or rebuilds.

One store lives through every round. In most rounds a child registers in a loop
and reports each (name, version, digest) the moment `register` returned; the
parent kills it at a random moment. Every fifth round the child runs
`rebuild()` instead (over more than two rebuild batches) and is killed in the
middle of it: half of those rounds at a random moment, half at a known point
between two batches. After every round the parent checks, from a fresh store
and from the raw rows: every write ever acknowledged is in the log, at most one
write was made that was not acknowledged (the one the kill interrupted), the
store opens, the view is at the log's head, and the view equals `replay()`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from children import Child, records
from evidence import log_rows, positions, view
from sizes import CONTENTION_NAMES, CRASH_ROUNDS

from conftest import descriptor
from imageledger import AuditEntry, Descriptor, ImageStore
from imageledger.domain.image import ImageName, image_id
from imageledger.errors import ImageNotFound
from imageledger.infrastructure.storage import REBUILD_BATCH

pytestmark = pytest.mark.reliability

NAMES = CONTENTION_NAMES
SEED_EVENTS = REBUILD_BATCH + 1  # so a rebuild takes two batches at least
SEED_NAMES = 100
WRITE_KILL_DELAY = 0.25  # at most this long after READY, in writer rounds
REBUILD_KILL_DELAY = 1.0


def test_killed_writers_and_rebuilds_lose_no_acknowledged_write(
    db_path: Path,
) -> None:
    rng = random.Random(20261128)
    _seed(db_path, SEED_EVENTS)
    acked: list[dict[str, Any]] = []  # every write acknowledged so far
    rebuilds_interrupted = rebuild_rounds = unacknowledged = 0

    # Each round's child is started (it imports and opens the store, then
    # waits for a line) while the previous round is being checked.
    upcoming: Child | None = _start(db_path, 0)
    try:
        for round_ in range(CRASH_ROUNDS):
            child, upcoming = upcoming, None
            assert child is not None
            lines = _run_and_kill(child, _kind(round_), rng)
            if round_ + 1 < CRASH_ROUNDS:
                upcoming = _start(db_path, round_ + 1)
            if _kind(round_) == "write":
                new = records(lines)
                acked.extend(new)
                unacknowledged += _check_round(db_path, round_, new)
            else:
                rebuild_rounds += 1
                finished = "REBUILT" in lines
                rebuilds_interrupted += not finished
                if _kind(round_) == "rebuild-paused":
                    assert not finished, "the kill between batches came too late"
            _check_store(db_path, acked)
    finally:
        if upcoming is not None:
            upcoming.close()

    with ImageStore.open(db_path) as store:
        assert store.rebuild() == len(log_rows(db_path))
        assert view(store) == store.replay()
    print(
        f"crash: {CRASH_ROUNDS} SIGKILLs survived ({rebuild_rounds} during rebuild, "
        f"{rebuilds_interrupted} of those before it returned); "
        f"{len(acked)} acknowledged writes, 0 lost; {unacknowledged} writes "
        "committed but killed before they were reported"
    )


def _seed(db: Path, count: int) -> None:
    """`count` events over a hundred names, each name's events in one commit.

    They go through the store's own write path (events, view and tracking in
    one transaction), only many to a commit: the test needs a log long enough
    for a slow rebuild, not thousands of fsyncs to make it.
    """
    per_name = -(-count // SEED_NAMES)
    with ImageStore.open(db) as store:
        for k in range(-(-count // per_name)):
            numbers = range(k * per_name, min((k + 1) * per_name, count))
            targets = [Descriptor.from_oci(descriptor(n)) for n in numbers]
            image = ImageName.register_new(
                namespace="default",
                name=f"seed/app{k}:v1",
                target=targets[0],
                labels={},
                actor="seed",
                reason=None,
            )
            for target in targets[1:]:
                image.register(target, {}, actor="seed", reason=None)
            store._log.append(image)
    assert len(log_rows(db)) == count


def _kind(round_: int) -> str:
    if round_ % 10 == 9:
        return "rebuild-paused"
    return "rebuild" if round_ % 5 == 4 else "write"


def _start(db: Path, round_: int) -> Child:
    kind = _kind(round_)
    if kind == "write":
        child = Child("register-loop", db, round_, NAMES, "--gate")
    else:
        child = Child("rebuild", db, "--gate", *(["--pause"] * (kind != "rebuild")))
    return child


def _run_and_kill(child: Child, kind: str, rng: random.Random) -> list[str]:
    """Let the child work, SIGKILL it; return the complete lines it printed."""
    try:
        child.wait_ready()
        child.send()
        if kind == "rebuild-paused":  # killed between two batches
            progress = child.line()
            assert progress is not None, child.stderr()
            assert records([progress])[0]["done"] == REBUILD_BATCH
            child.kill()
            return [progress, *child.rest()]
        limit = WRITE_KILL_DELAY if kind == "write" else REBUILD_KILL_DELAY
        time.sleep(rng.uniform(0, limit))
        child.kill()
        return child.rest()
    finally:
        child.close()


def _check_round(db: Path, round_: int, new: list[dict[str, Any]]) -> int:
    """This round's acknowledged writes are in the log exactly as reported.

    Returns the number of this round's writes the log holds beyond them (at
    most one: the register the kill cut off after its commit).
    """
    with ImageStore.open(db) as store:
        histories = {
            name: _history(store, name)
            for name in (f"registry.example/team/app{i}:latest" for i in range(NAMES))
        }
    for ack in new:
        entry = histories[ack["name"]][ack["version"] - 1]
        assert entry.version == ack["version"], ack
        assert entry.target is not None
        assert entry.target.digest == ack["digest"], ack
    written = [
        entry
        for history in histories.values()
        for entry in history
        if entry.labels.get("round") == str(round_)
    ]
    seqs = sorted(int(entry.labels["seq"]) for entry in written)
    assert seqs == list(range(len(seqs))), "writes of one round are one sequence"
    assert len(new) <= len(written) <= len(new) + 1
    return len(written) - len(new)


def _check_store(db: Path, acked: list[dict[str, Any]]) -> None:
    """The store opens, its view is the log's fold, and no ack was ever lost."""
    with ImageStore.open(db) as store:
        head, at = positions(db)
        assert at == head
        assert view(store) == store.replay()
    stored = {(row[1], row[2]): row[4] for row in log_rows(db)}
    for ack in acked:
        state = stored.get((image_id("default", ack["name"]).hex, ack["version"]))
        assert state is not None, f"acknowledged write lost: {ack}"
        assert ack["digest"].encode() in state, ack


def _history(store: ImageStore, name: str) -> list[AuditEntry]:
    try:
        return store.history(name)
    except ImageNotFound:
        return []
