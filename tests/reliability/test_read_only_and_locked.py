"""A store file that cannot be written: read-only, or locked by another process.

Read-only means the operating system refuses writes to the file: the file is
mode 0444 and the store runs in a child process that obeys file modes (when
the suite runs as root, the child gives up the capabilities that let root
write any file). Locked means another process holds SQLite's write
lock (BEGIN IMMEDIATE) for longer than the store's lock timeout.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from children import Child, records
from evidence import file_rows, view

from conftest import MANIFEST, SCRIPT, descriptor, digest
from imageledger import ImageStore
from imageledger.errors import StoreError

pytestmark = pytest.mark.reliability

PR_CAPBSET_DROP = 24  # linux/prctl.h
FILE_CAPABILITIES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
NAME = "registry.example/app:prod"


def without_write_access() -> dict[str, Any]:
    """Popen arguments that run a child which cannot write a mode-0444 file."""
    if os.geteuid() != 0:
        return {}  # mode 0444 already refuses our own writes
    # Root writes any file through CAP_DAC_OVERRIDE. Dropped from the bounding
    # set before exec, those capabilities are gone from the child, which then
    # obeys file modes like any user (and can still run this Python).
    try:
        subprocess.run(
            [sys.executable, "-c", ""], preexec_fn=_drop_file_capabilities, check=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"running as root and cannot give up file capabilities: {e}")
    return {"preexec_fn": _drop_file_capabilities}


def _drop_file_capabilities() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in FILE_CAPABILITIES:
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def test_a_read_only_file_serves_reads_and_refuses_writes_clearly(
    tmp_path: Path,
) -> None:
    db = tmp_path / "images.db"
    with ImageStore.open(db) as store:
        store.register(NAME, descriptor(1))
        store.register(NAME, descriptor(2))
        store.register("base:1", descriptor(3))
    assert not Path(f"{db}-wal").exists()  # closed cleanly: all in the main file
    db.chmod(0o444)
    before = db.read_bytes()

    child = Child("read-only-probe", db, NAME, cwd=tmp_path, **without_write_access())
    try:
        child.wait_ready()
        outcomes = {line.pop("call"): line for line in records(child.finish())}
    finally:
        child.close()

    assert outcomes["get"] == {"result": digest(2)}
    assert outcomes["list"] == {"result": ["base:1", NAME]}
    assert outcomes["history"] == {"result": [1, 2]}
    assert outcomes["replay"] == {"result": ["base:1", NAME]}
    for call in ("register", "register-new", "delete", "rebuild"):
        assert outcomes[call]["error"] == "StoreError", outcomes[call]
        assert outcomes[call]["message"].startswith(
            "database is read-only: the write was not made"
        ), outcomes[call]
    assert outcomes["get-after"] == {"result": digest(2)}
    assert db.read_bytes() == before
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def busy_timeout_ms(store: ImageStore) -> int:
    """How long SQLite waits for the write lock on the store's write connection.

    Read back from SQLite itself (the wait is measured only from below, so this
    is what shows that the configured value, not the default, is in force).
    """
    with store._log._factory.datastore.transaction(commit=False) as c:
        c.execute("PRAGMA busy_timeout")
        return int(c.fetchone()[0])


@pytest.fixture
def lock_holder(db_path: Path) -> Iterator[Child]:
    """Another process holding the store's write lock until released."""
    with ImageStore.open(db_path) as store:
        store.register(NAME, descriptor(1), {"tier": "prod"})
        store.register("base:1", descriptor(2))
    holder = Child("hold-lock", db_path)
    try:
        holder.wait_ready()
        yield holder
    finally:
        holder.close()


def test_a_write_past_the_lock_timeout_says_busy_and_writes_nothing(
    db_path: Path, lock_holder: Child, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGELEDGER_LOCK_TIMEOUT", "0.4")
    with ImageStore.open(db_path) as store:  # opening needs no write lock
        assert busy_timeout_ms(store) == 400
        before = file_rows(db_path)
        writes = {
            "register": lambda: store.register(NAME, descriptor(5)),
            "register-new": lambda: store.register("new:1", descriptor(6)),
            "conditional": lambda: store.register(NAME, descriptor(5), expect=1),
            "delete": lambda: store.delete(NAME),
            "rebuild": lambda: store.rebuild(),
        }
        for call, write in writes.items():
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                write()
            waited = time.monotonic() - started
            assert str(caught.value).startswith(
                "database is busy: another process held the write lock too long"
            ), call
            assert waited >= 0.4, f"{call} gave up after {waited:.3f} s"
            assert file_rows(db_path) == before, f"{call} wrote something"

        # Readers are never blocked by the writer's lock (WAL).
        assert store.get(NAME).target.digest == digest(1)
        assert [image.name for image in store.list()] == ["base:1", NAME]
        assert [entry.version for entry in store.history(NAME)] == [1]
        assert view(store) == store.replay()

        lock_holder.send()
        assert lock_holder.finish() == ["RELEASED"]
        assert store.register(NAME, descriptor(5)).version == 2
        store.delete("base:1")
        assert len(file_rows(db_path)[0]) == len(before[0]) + 2
        assert [image.name for image in store.list()] == [NAME]


def test_the_lock_timeout_argument_overrides_the_environment(
    db_path: Path, lock_holder: Child, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGELEDGER_LOCK_TIMEOUT", "30")
    with ImageStore.open(db_path, lock_timeout=0.2) as store:
        assert busy_timeout_ms(store) == 200
        before = file_rows(db_path)
        started = time.monotonic()
        with pytest.raises(StoreError, match="^database is busy"):
            store.register(NAME, descriptor(5))
        assert time.monotonic() - started >= 0.2
        assert file_rows(db_path) == before


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A store in a directory that cannot be written: (its path there, Popen
    arguments for a child that must obey it).

    As root, a real read-only bind mount (root writes anything else); where
    mounting is not permitted, or not as root, a directory and file without
    write permission, read by a child without root's file capabilities.
    """
    source = tmp_path / "source"
    source.mkdir()
    with ImageStore.open(source / "images.db") as store:
        store.register(NAME, descriptor(1), {"tier": "prod"})
        store.register(NAME, descriptor(2))
        store.register("base:1", descriptor(3))
    mount = tmp_path / "mounted"
    mount.mkdir()
    mounted = False
    if os.geteuid() == 0:
        bind = subprocess.run(["mount", "--bind", str(source), str(mount)], check=False)
        if bind.returncode == 0:
            mounted = True
            done = subprocess.run(
                ["mount", "-o", "remount,bind,ro", str(mount)], check=False
            )
            if done.returncode != 0:
                subprocess.run(["umount", str(mount)], check=True)
                mounted = False
    try:
        if mounted:
            yield mount / "images.db", {}
        else:
            (source / "images.db").chmod(0o444)
            source.chmod(0o555)
            yield source / "images.db", without_write_access()
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)], check=True)
        source.chmod(0o755)


READS = [
    ["list"],
    ["get", NAME],
    ["history", NAME],
    ["verify"],
    ["checkpoint"],
    ["export"],
    ["as-of", "2"],
    ["log"],
    ["where", digest(2)],
    ["diff", "1", "3"],
    ["replay"],
]


def test_every_read_command_works_on_a_read_only_mount_and_writes_say_read_only(
    read_only_store: tuple[Path, dict[str, Any]],
) -> None:
    db, child = read_only_store
    before = db.read_bytes()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SCRIPT), "--db", str(db), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            **child,
        )

    for command in READS:
        done = run(*command)
        assert (done.returncode, done.stderr) == (0, ""), (command, done.stderr)
    assert run("list", "-q").stdout == f"base:1\n{NAME}\n"
    assert digest(2) in run("get", NAME).stdout
    assert run("checkpoint").stdout.startswith("3:sha256:")
    for command in (
        [
            "register",
            "new:1",
            "--digest",
            digest(4),
            "--media-type",
            MANIFEST,
            "--size",
            "1004",
        ],
        ["delete", NAME],
        ["rebuild"],
    ):
        done = run(*command)
        assert (done.returncode, done.stdout, done.stderr) == (
            1,
            "",
            "Error: database is read-only: the write was not made "
            "(attempt to write a readonly database)\n",
        ), command
    assert db.read_bytes() == before
    assert sorted(p.name for p in db.parent.iterdir()) == ["images.db"]
