"""Write-once names across OS processes, and the upgrade that brings them.

Real `python tests/process_worker.py` processes, released together from a
gate (see tests/test_processes.py), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_processes import TIMEOUT, WORKER, Workers, release_together

from conftest import Rows, descriptor, digest
from imageledger import ImageStore

pytestmark = pytest.mark.slow

NAME = "registry.example/app:1.4.2"
OTHER = {2: 3, 3: 2}  # each racer's digest number, and the other's


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


def refusal(bound: int, asked: int) -> str:
    return (
        f'image "{NAME}" in namespace "default" is immutable at {digest(bound)}; '
        f"it cannot point at {digest(asked)}"
    )


def test_two_processes_repointing_an_immutable_name_are_both_refused(
    workers: Workers, location: str, log_rows: Rows
) -> None:
    with ImageStore.open(location) as store:
        store.register(NAME, descriptor(1), immutable=True)
    rows = log_rows()
    gated = [
        workers.start_gated("attempt", location, NAME, str(n), *flag)
        for n, flag in ((2, ()), (3, ("--immutable",)))
    ]
    outputs = release_together(gated)
    assert [[json.loads(line) for line in lines] for lines in outputs] == [
        [{"refused": refusal(1, 2)}],
        [{"refused": refusal(1, 3)}],
    ]
    assert log_rows() == rows
    with ImageStore.open(location) as store:
        assert store.get(NAME).target.digest == digest(1)
        assert store.verify().events == 1


def test_two_processes_binding_a_new_name_leave_one_binding_and_one_refusal(
    workers: Workers, location: str, log_rows: Rows
) -> None:
    # Both read the name as absent; the loser's append conflicts, it reads
    # again, finds the winner's binding and is refused: no silent overwrite.
    ImageStore.open(location).close()
    gated = [
        workers.start_gated("attempt", location, NAME, str(n), "--immutable")
        for n in (2, 3)
    ]
    outputs = [json.loads(lines[0]) for lines in release_together(gated)]
    won = [out for out in outputs if "refused" not in out]
    assert len(won) == 1, outputs
    winner = int(won[0]["digest"][-1])
    assert won[0] == {
        "name": NAME,
        "version": 1,
        "digest": digest(winner),
        "labels": {},
        "immutable": True,
    }
    refused = [out for out in outputs if "refused" in out]
    assert refused == [{"refused": refusal(winner, OTHER[winner])}]
    assert len(log_rows()) == 1
    with ImageStore.open(location) as store:
        assert store.get(NAME).target.digest == digest(winner)


def downgrade_to_the_schema_before_immutable_names(
    location: str, run_sql: Callable[[str], None]
) -> None:
    """Make the store what the release before write-once names left: no
    column for them, no audit index, and that release's schema version."""
    run_sql("ALTER TABLE images DROP COLUMN immutable")
    run_sql("DROP TABLE audit_index")
    run_sql("DELETE FROM tracking WHERE application_name='audit_index'")
    if "://" in location:
        run_sql("UPDATE imageledger_store SET schema_version = 1")
    else:
        run_sql("PRAGMA user_version = 2")


def schema_version(location: str, select_sql: Callable[[str], Any]) -> int:
    if "://" in location:
        return int(select_sql("SELECT schema_version FROM imageledger_store")[0][0])
    return int(select_sql("PRAGMA user_version")[0][0])


def test_a_store_from_before_immutable_names_is_upgraded_keeping_its_log(
    location: str,
    run_sql: Callable[[str], None],
    select_sql: Callable[[str], Any],
) -> None:
    with ImageStore.open(location) as store:
        store.register("app:1", descriptor(1))
        store.register("app:2", descriptor(2))
        store.delete("app:1")
        before = store.checkpoint()
        images = list(store.list())
    downgrade_to_the_schema_before_immutable_names(location, run_sql)
    with ImageStore.open(location) as store:
        assert store.checkpoint() == before  # not one stored byte changed
        assert store.verify(before).events == 3
        assert list(store.list()) == images
        assert all(not image.immutable for image in images)
        store.register("app:1", descriptor(1), immutable=True)
    assert schema_version(location, select_sql) == (2 if "://" in location else 3)
    assert select_sql("SELECT name, immutable FROM images ORDER BY name") == [
        ("app:1", True if "://" in location else 1),
        ("app:2", False if "://" in location else 0),
    ]
    with ImageStore.open(location) as store:
        assert store.get("app:1").immutable is True
        assert store.verify().events == 4


def test_processes_opening_a_store_from_before_immutable_names_upgrade_it_once(
    tmp_path: Path,
    location: str,
    run_sql: Callable[[str], None],
    select_sql: Callable[[str], Any],
) -> None:
    with ImageStore.open(location) as store:
        for i in range(20):
            store.register(f"old:{i}", descriptor(i))
        before = store.checkpoint()
    downgrade_to_the_schema_before_immutable_names(location, run_sql)
    command = [sys.executable, str(WORKER), "attempt", location]
    processes = [
        subprocess.Popen(
            [*command, f"new:{i}", str(100 + i), "--immutable"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for process in processes:
        out, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err
        assert json.loads(out)["immutable"] is True
    with ImageStore.open(location) as store:
        assert store.verify(before).events == 24
        assert [i.immutable for i in store.list()] == [True] * 4 + [False] * 20
    assert schema_version(location, select_sql) == (2 if "://" in location else 3)
