"""Watching the log: `imageledger watch` in one process shows the events other
processes append, as they commit, on both backends; it ends quietly on Ctrl-C
and SIGTERM. Lines are read with a generous deadline, never timed."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli import register_args

from conftest import SCRIPT, descriptor, digest
from imageledger import ImageStore
from imageledger.errors import InvalidArgument, StoreError

pytestmark = pytest.mark.slow

DEADLINE = 30.0  # seconds a line may take before the watch counts as broken
HEADER = (
    f"{'POSITION':8}  {'NAME':30}  VERSION  KIND        {'DIGEST':71}  "
    f"{'TIMESTAMP':20}  {'ACTOR':12}  REASON"
)


class Watcher:
    """An `imageledger watch` child, its stdout lines and its stderr read on
    threads (a child blocked on a full stderr pipe would look like one that
    ignores its signal)."""

    def __init__(self, location: str, *args: str, sigint: Any = signal.SIG_DFL) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
        self.process = subprocess.Popen(
            [str(SCRIPT), "--db", location, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            # What the child starts with, whatever the test runner has (a
            # shell script's background job starts with SIGINT ignored).
            preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr = threading.Thread(target=self._read_errors, daemon=True)
        self._stderr.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        self._errors.append(self.process.stderr.read())

    def ended(self) -> tuple[int, str]:
        """The exit code and stderr of a child that ends by itself."""
        self.process.wait(timeout=DEADLINE)
        self._stderr.join(timeout=DEADLINE)
        return self.process.returncode, "".join(self._errors)

    def line(self) -> str | None:
        """The next line (None at the end of output), waiting up to DEADLINE."""
        return self._lines.get(timeout=DEADLINE)

    def stop(self, signum: int) -> tuple[int, str]:
        """Send `signum`; the exit code and stderr once it ended."""
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self._stderr.join(timeout=DEADLINE)
            raise AssertionError(
                f"the watch did not stop on signal {signum}; its stderr: "
                f"{''.join(self._errors)[-2000:]!r}"
            ) from None
        self._stderr.join(timeout=DEADLINE)
        return self.process.returncode, "".join(self._errors)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for watcher in started:
        watcher.kill()


def write(location: str, *args: str) -> None:
    """Run one `imageledger` command in its own process; it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    done = subprocess.run(
        [str(SCRIPT), "--db", location, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr


def register(location: str, name: str, n: int, *extra: str) -> None:
    target = descriptor(n)
    write(
        location,
        "register",
        name,
        "--digest",
        target["digest"],
        "--media-type",
        target["mediaType"],
        "--size",
        str(target["size"]),
        "--actor",
        "ci",
        *extra,
    )


def row(location: str, name: str, position: int, namespace: str = "default") -> str:
    with ImageStore.open(location) as store:
        entry = next(
            e
            for e in store.history(name, namespace=namespace)
            if e.position == position
        )
    target = entry.target.digest if entry.target is not None else "-"
    return (
        f"{entry.position!s:8}  {entry.name:30}  {entry.version!s:7}  "
        f"{entry.kind:10}  {target:71}  "
        f"{entry.timestamp.strftime('%Y-%m-%dT%H:%M:%SZ'):20}  "
        f"{entry.actor:12}  {entry.reason or '-'}"
    )


def test_watch_shows_events_other_processes_append_until_sigterm(
    location: str, watchers: list[Watcher]
) -> None:
    register(location, "old:1", 1)  # before the watch: not shown
    watcher = Watcher(location, "watch")
    watchers.append(watcher)
    assert watcher.line() == HEADER  # printed once the watch has read the head
    register(location, "app:prod", 2, "--reason", "release 1.2")
    assert watcher.line() == row(location, "app:prod", 2)
    write(location, "delete", "app:prod", "--actor", "ops")
    assert watcher.line() == row(location, "app:prod", 3)
    assert watcher.stop(signal.SIGTERM) == (0, "")
    assert watcher.line() is None


def test_watch_after_a_position_replays_first_then_follows_in_json(
    location: str, watchers: list[Watcher]
) -> None:
    register(location, "a:1", 1)
    register(location, "b:1", 2)
    watcher = Watcher(location, "--json", "watch", "--after", "1")
    watchers.append(watcher)
    first = watcher.line()
    assert first is not None
    assert json.loads(first)["position"] == 2
    register(location, "c:1", 3)
    line = watcher.line()
    assert line is not None
    with ImageStore.open(location) as store:
        (entry,) = store.history("c:1")
    assert json.loads(line) == {
        "position": 3,
        "namespace": "default",
        "name": "c:1",
        "version": 1,
        "kind": "registered",
        "target": descriptor(3),
        "labels": {},
        "timestamp": entry.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": "ci",
        "reason": None,
        "immutable": False,
        "forced": False,
    }
    assert watcher.stop(signal.SIGINT) == (0, "")


def test_watch_shows_only_its_namespace(location: str, watchers: list[Watcher]) -> None:
    watcher = Watcher(location, "-n", "prod", "watch")
    watchers.append(watcher)
    assert watcher.line() == HEADER
    register(location, "elsewhere:1", 1)  # namespace default
    write(location, "-n", "prod", *register_args("here:1", 2, "--actor", "ci"))
    assert watcher.line() == row(location, "here:1", 2, namespace="prod")
    assert watcher.stop(signal.SIGINT) == (0, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["watch", "name=="],
            "Error: invalid filter 'name==': expected a value at position 6: "
            "name== >||<\n",
        ),
        (
            ["watch", "--after", "-1"],
            "Error: invalid --after: must be a log position (0 or more)\n",
        ),
    ],
)
def test_watch_refuses_bad_arguments_with_exit_2(
    location: str, args: list[str], message: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    done = subprocess.run(
        [str(SCRIPT), "--db", location, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", message)


def test_store_watch_yields_what_another_handle_appends(location: str) -> None:
    with ImageStore.open(location) as store, ImageStore.open(location) as other:
        other.register("before:1", descriptor(1), actor="ci")
        watch = store.watch()
        replay = store.watch(after=0, namespace="default")
        other.register("app:1", descriptor(2), actor="ci", reason="r")
        other.register("x:1", descriptor(3), namespace="other", actor="ci")
        other.delete("app:1", actor="ops")
        try:
            seen = [next(watch) for _ in range(3)]
            assert seen == [
                *other.history("app:1")[:1],
                *other.history("x:1", namespace="other"),
                *other.history("app:1")[1:],
            ]
            replayed = [next(replay) for _ in range(3)]
            assert [(e.name, e.position) for e in replayed] == [
                ("before:1", 1),
                ("app:1", 2),
                ("app:1", 4),
            ]
            assert replayed[1].target is not None
            assert replayed[1].target.digest == digest(2)
        finally:
            watch.close()
            replay.close()


def test_store_watch_shows_only_the_events_its_filters_match(location: str) -> None:
    with ImageStore.open(location) as store, ImageStore.open(location) as other:
        watch = store.watch(filters=["name==app:1", f"target.digest=={digest(3)}"])
        other.register("app:1", descriptor(1), actor="ci")
        other.register("app:2", descriptor(2), actor="ci")
        other.register("app:3", descriptor(3), actor="ci")
        other.delete("app:2", actor="ops")
        other.delete("app:1", actor="ops")  # a delete has its name, no target
        try:
            seen = [next(watch) for _ in range(3)]
        finally:
            watch.close()
    assert [(e.name, e.kind) for e in seen] == [
        ("app:1", "registered"),
        ("app:3", "registered"),
        ("app:1", "deleted"),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"after": -1}, "invalid after: must be a log position (0 or more)"),
        ({"after": True}, "invalid after: must be a log position (0 or more)"),
        ({"poll_interval": 0}, "invalid poll_interval: must be seconds, up to 3600"),
        ({"namespace": "a b"}, None),
        (
            {"filters": ["name=="]},
            "invalid filter 'name==': expected a value at position 6: name== >||<",
        ),
    ],
)
def test_store_watch_refuses_bad_arguments_when_called(
    store: ImageStore, kwargs: dict[str, object], message: str | None
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        store.watch(**kwargs)  # type: ignore[arg-type]
    if message is not None:
        assert str(refused.value) == message


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_watch_on_sqlite_exits_1_when_its_file_is_deleted_or_replaced(
    tmp_path: Path, watchers: list[Watcher], how: str
) -> None:
    db = tmp_path / "images.db"
    register(str(db), "old:1", 1)
    watcher = Watcher(str(db), "watch")
    watchers.append(watcher)
    assert watcher.line() == HEADER
    register(str(db), "app:1", 2)
    assert watcher.line() == row(str(db), "app:1", 2)
    if how == "deleted":
        db.unlink()
    else:
        other = tmp_path / "other.db"
        register(str(other), "elsewhere:1", 3)
        other.replace(db)
    assert watcher.line() is None  # it ends by itself, without a signal
    assert watcher.ended() == (
        1,
        f"Error: the store {str(db)!r} was {how} while being watched\n",
    )


def test_store_watch_raises_store_error_when_its_file_is_deleted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "images.db"
    with ImageStore.open(db) as store:
        store.register("app:1", descriptor(1))
        watch = store.watch(after=0, poll_interval=0.01)
        try:
            assert next(watch).name == "app:1"
            db.unlink()
            with pytest.raises(StoreError) as raised:
                next(watch)
        finally:
            watch.close()
    assert str(raised.value) == f"the store {str(db)!r} was deleted while being watched"


def test_watch_stops_on_sigint_when_it_started_with_sigint_ignored(
    tmp_path: Path, watchers: list[Watcher]
) -> None:
    # Python installs no KeyboardInterrupt handler when it starts with SIGINT
    # ignored; the watch takes SIGINT itself, as serve and follow do.
    db = str(tmp_path / "images.db")
    register(db, "old:1", 1)
    watcher = Watcher(db, "watch", sigint=signal.SIG_IGN)
    watchers.append(watcher)
    assert watcher.line() == HEADER
    register(db, "app:1", 2)
    assert watcher.line() == row(db, "app:1", 2)
    assert watcher.stop(signal.SIGINT) == (0, "")
