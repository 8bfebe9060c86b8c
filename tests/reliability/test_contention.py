"""Contention: several processes hammer the same names of one SQLite file.

Four worker processes each run a random mix of plain registers, creates
(expect="absent"), compare-and-swap retargets, deletes, and conditional deletes
(if_digest, expect) over fifty shared names, released at the same moment. Each
reports every call's outcome the moment it returns; every write carries a
reason unique to that call, so each acknowledged write can be found in the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from children import Child, records
from evidence import log_rows, positions, view
from sizes import CONTENTION_NAMES, CONTENTION_OPERATIONS, CONTENTION_PROCESSES

from imageledger import AuditEntry, ImageStore
from imageledger.errors import ImageNotFound

pytestmark = pytest.mark.reliability

DOCUMENTED = {"ok", "Conflict", "ImageNotFound"}
CONDITIONAL = {"create", "retarget", "delete-if", "delete-expect"}


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.close()


def test_processes_contending_for_shared_names_lose_no_acknowledged_write(
    db_path: Path, children: list[Child]
) -> None:
    ImageStore.open(db_path).close()
    names = [f"registry.example/team/app{i}:latest" for i in range(CONTENTION_NAMES)]
    for worker in range(CONTENTION_PROCESSES):
        child = Child(
            "mixed",
            db_path,
            worker,
            CONTENTION_OPERATIONS,
            CONTENTION_NAMES,
            1000 + worker,  # the seed: each worker its own mix, the same every run
            "--gate",
        )
        children.append(child)
        child.wait_ready()
    for child in children:
        child.send()
    outcomes = [records(child.finish()) for child in children]

    # Every call returned, and only with a documented outcome: Conflict only
    # for a condition, ImageNotFound only where the name was gone.
    for worker, lines in enumerate(outcomes):
        assert [line["seq"] for line in lines] == list(range(CONTENTION_OPERATIONS))
        unexpected = [line for line in lines if line["outcome"] not in DOCUMENTED]
        assert unexpected == [], f"worker {worker}: {unexpected[:5]}"
        conflicts = [line for line in lines if line["outcome"] == "Conflict"]
        assert all(line["op"] in CONDITIONAL for line in conflicts)
    tally = Counter(line["outcome"] for lines in outcomes for line in lines)
    assert tally["ok"] > 0
    assert tally["Conflict"] > 0  # the workers did contend, on conditions too

    acked = {
        f"w{worker}s{line['seq']}": line
        for worker, lines in enumerate(outcomes)
        for line in lines
        if line["outcome"] == "ok"
    }
    with ImageStore.open(db_path) as store:
        histories = {name: _history(store, name) for name in names}
        events = {
            entry.reason: entry for history in histories.values() for entry in history
        }
        # Each acknowledged write is in the log, once, as it was acknowledged;
        # and the log holds nothing else: a refused call wrote nothing.
        assert sum(len(history) for history in histories.values()) == len(events)
        missing = sorted(set(acked) - set(events))
        assert missing == [], f"{len(missing)} acknowledged writes are not in the log"
        assert sorted(events) == sorted(acked)
        for reason, line in acked.items():
            _check_event(events[reason], line)
        for name, history in histories.items():
            versions = [entry.version for entry in history]
            assert versions == list(range(1, len(history) + 1)), name
        assert len(log_rows(db_path)) == len(acked)

        # The view is the fold of the log, and says it is at the log's head.
        head, at = positions(db_path)
        assert at == head == len(acked)
        assert view(store) == store.replay()
    print(
        f"contention: {CONTENTION_PROCESSES} processes x {CONTENTION_OPERATIONS} "
        f"operations over {CONTENTION_NAMES} names: "
        f"{sum(tally.values())} attempted, {tally['ok']} acknowledged writes, "
        f"{tally['Conflict']} Conflict, {tally['ImageNotFound']} ImageNotFound, "
        f"{len(missing)} acknowledged writes lost"
    )


def _history(store: ImageStore, name: str) -> list[AuditEntry]:
    try:
        return store.history(name)
    except ImageNotFound:
        return []


def _check_event(entry: AuditEntry, line: dict[str, Any]) -> None:
    assert entry.name == line["name"], line
    if line["op"] in ("register", "create", "retarget"):
        assert entry.kind == "registered", line
        assert entry.version == line["version"], line
        assert entry.target is not None
        assert entry.target.digest == line["digest"], line
        assert entry.labels == {"by": entry.reason}, line
    else:
        assert entry.kind == "deleted", line
