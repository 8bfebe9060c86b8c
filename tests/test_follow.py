"""`imageledger follow containerd` against a real containerd: a daemon of its own
per test (CRI disabled; root, state and socket in a short temporary folder),
images imported with `ctr images import --no-unpack` from OCI layout tarballs
built here, and the follower as a real process on both backends.

Every wait is for a condition with a generous deadline, never a fixed sleep.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SCRIPT
from imageledger import ImageStore
from imageledger.errors import ImageNotFound
from imageledger.projections.audit import AuditEntry

pytestmark = pytest.mark.slow

DEADLINE = 30.0  # seconds a condition may take before the test counts it broken
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
ACTOR = "containerd@node-1"


def _require_containerd() -> None:
    missing = CONTAINERD is None or CTR is None
    reason = "containerd and ctr are not installed" if missing else ""
    if not missing and os.geteuid() != 0:
        reason = "containerd runs as root"
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"containerd tests cannot run in CI: {reason}")
        pytest.skip(reason)


class Containerd:
    """A containerd daemon of our own: config, root, state and socket in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = str(folder / "c.sock")
        self.config = folder / "config.toml"
        disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.zfs",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.devmapper",
        ]
        self.config.write_text(
            "version = 2\n"
            f'root = "{folder / "root"}"\n'
            f'state = "{folder / "state"}"\n'
            f"disabled_plugins = {json.dumps(disabled)}\n"
            f'[grpc]\n  address = "{self.socket}"\n'
            f'[ttrpc]\n  address = "{self.socket}.ttrpc"\n'
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert CONTAINERD is not None
        log = (self.folder / "containerd.log").open("ab")
        self.process = subprocess.Popen(
            [CONTAINERD, "--config", str(self.config)], stdout=log, stderr=log
        )
        log.close()
        wait_for(lambda: self.answers(), "containerd to answer")

    def answers(self) -> bool:
        assert CTR is not None
        return (
            subprocess.run(
                [CTR, "--address", self.socket, "version"],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=DEADLINE)
        self.process = None

    def ctr(self, namespace: str, *args: str) -> str:
        assert CTR is not None
        done = subprocess.run(
            [CTR, "--address", self.socket, "-n", namespace, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    _require_containerd()
    # A socket path must fit in 108 bytes: a short folder straight under /tmp.
    folder = Path(tempfile.mkdtemp(prefix="il-cd-", dir="/tmp"))
    daemon = Containerd(folder)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)


def oci_archive(path: Path, refs: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Write an OCI layout tarball with one manifest per ref (named by the
    ref.name annotation, which `ctr images import` uses as the image name);
    return each ref's descriptor as containerd will report it."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}

    def blob(data: bytes) -> dict[str, Any]:
        digest = hashlib.sha256(data).hexdigest()
        files[f"blobs/sha256/{digest}"] = data
        return {"digest": f"sha256:{digest}", "size": len(data)}

    descriptors: dict[str, dict[str, Any]] = {}
    entries = []
    for ref, seed in refs.items():
        config = {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "config": {"Labels": {"seed": str(seed)}},
        }
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                **blob(json.dumps(config).encode()),
            },
            "layers": [],
        }
        descriptors[ref] = {
            "mediaType": MANIFEST,
            **blob(json.dumps(manifest).encode()),
        }
        entries.append(
            {
                **descriptors[ref],
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        )
    files["index.json"] = json.dumps(
        {"schemaVersion": 2, "manifests": entries}
    ).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return descriptors


class Follower:
    """An `imageledger follow containerd` process; its JSON lines read on a thread."""

    def __init__(self, location: str, socket: str, cache: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
        env["XDG_CACHE_HOME"] = str(cache)
        self.process = subprocess.Popen(
            [
                *(str(SCRIPT), "--db", location, "--json", "follow", "containerd"),
                *("--address", socket, "--actor", ACTOR, *args),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(json.loads(line))
        self._lines.put(None)

    def until(self, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first line (from now) for which `check` holds."""
        deadline = time.monotonic() + DEADLINE
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no such line; saw {self.seen[-5:]}"
            line = self._lines.get(timeout=left)
            assert line is not None, f"the follower ended: {self.stderr()}"
            self.seen.append(line)
            if check(line):
                return line

    def status(self, what: str) -> dict[str, Any]:
        return self.until(lambda line: line.get("status") == what)

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, dict[str, Any], str]:
        """Send `signum`: the exit code, the last status line and stderr."""
        self.process.send_signal(signum)
        self.process.wait(timeout=DEADLINE)
        last = self.status("stopped")
        return self.process.returncode, last, self.stderr()

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def followers() -> Iterator[list[Follower]]:
    started: list[Follower] = []
    yield started
    for follower in started:
        follower.kill()


def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def history(location: str, name: str, namespace: str) -> list[AuditEntry]:
    with ImageStore.open(location) as store:
        try:
            return store.history(name, namespace=namespace)
        except ImageNotFound:
            return []


def wait_history(
    location: str, name: str, namespace: str, done: Callable[[list[AuditEntry]], bool]
) -> list[AuditEntry]:
    found: list[AuditEntry] = []

    def check() -> bool:
        found[:] = history(location, name, namespace)
        return done(found)

    wait_for(check, f"the history of {name!r}")
    return found


def states(entries: list[AuditEntry]) -> list[tuple[str, str | None, dict[str, str]]]:
    """Each event as (kind, digest, labels)."""
    return [
        (e.kind, e.target.digest if e.target else None, dict(e.labels or {}))
        for e in entries
    ]


def last_is(
    kind: str, digest: str | None = None, labels: dict[str, str] | None = None
) -> Callable[[list[AuditEntry]], bool]:
    """A check that the last event of a history is this one."""

    def check(entries: list[AuditEntry]) -> bool:
        return bool(entries) and states(entries)[-1] == (kind, digest, labels or {})

    return check


APP = "registry.example/app"


def test_follow_records_tags_retags_labels_and_removals_as_they_happen(
    location: str, containerd: Containerd, followers: list[Follower], tmp_path: Path
) -> None:
    ns = "build"
    refs = oci_archive(tmp_path / "images.tar", {f"{APP}:1": 1, f"{APP}:2": 2})
    one, two = refs[f"{APP}:1"]["digest"], refs[f"{APP}:2"]["digest"]
    containerd.ctr(ns, "images", "import", "--no-unpack", str(tmp_path / "images.tar"))
    follower = Follower(location, containerd.socket, tmp_path, "--namespace", ns, "-v")
    followers.append(follower)
    connected = follower.status("connected")
    assert (connected["registered"], connected["namespaces"]) == (2, [ns])

    containerd.ctr(ns, "images", "tag", f"{APP}:1", f"{APP}:prod")
    wait_history(location, f"{APP}:prod", ns, last_is("registered", one))
    containerd.ctr(ns, "images", "tag", "--force", f"{APP}:2", f"{APP}:prod")
    wait_history(location, f"{APP}:prod", ns, last_is("registered", two))
    containerd.ctr(ns, "images", "label", f"{APP}:prod", "team=web")
    wait_history(
        location, f"{APP}:prod", ns, last_is("registered", two, {"team": "web"})
    )
    containerd.ctr(ns, "images", "rm", f"{APP}:prod")
    prod = wait_history(location, f"{APP}:prod", ns, last_is("deleted"))

    observed = states(prod)
    # tag --force is a delete then a create in containerd: the Get that follows
    # the delete event may already see the new target, so the deleted event
    # between the two targets is there only if the follower saw the gap.
    without_gap = [
        s
        for i, s in enumerate(observed)
        if not (s[0] == "deleted" and i < len(observed) - 1)
    ]
    assert without_gap == [
        ("registered", one, {}),
        ("registered", two, {}),
        ("registered", two, {"team": "web"}),
        ("deleted", None, {}),
    ]
    assert {e.actor for e in prod} == {ACTOR}
    assert prod[0].reason == "containerd /images/create"
    assert prod[-1].reason == "containerd /images/delete"
    assert {e.reason for e in prod} <= {
        "containerd /images/create",
        "containerd /images/update",
        "containerd /images/delete",
    }
    assert states(history(location, f"{APP}:1", ns)) == [("registered", one, {})]
    assert history(location, f"{APP}:1", ns)[0].reason == "containerd reconcile"

    code, last, stderr = follower.stop()
    assert (code, stderr) == (0, ""), stderr
    assert last["refused"] == 0
    assert last["deleted"] == [kind for kind, _, _ in observed].count("deleted")
    assert last["events"] >= 4


def test_reconcile_records_what_changed_while_the_follower_was_stopped(
    location: str, containerd: Containerd, followers: list[Follower], tmp_path: Path
) -> None:
    ns = "default"
    refs = oci_archive(
        tmp_path / "images.tar", {f"{APP}:1": 1, f"{APP}:2": 2, f"{APP}:3": 3}
    )
    one, two = refs[f"{APP}:1"]["digest"], refs[f"{APP}:2"]["digest"]
    containerd.ctr(ns, "images", "import", "--no-unpack", str(tmp_path / "images.tar"))
    containerd.ctr(ns, "images", "tag", f"{APP}:1", f"{APP}:prod")
    first = Follower(location, containerd.socket, tmp_path)
    followers.append(first)
    assert first.status("connected")["registered"] == 4
    code, _, stderr = first.stop(signal.SIGINT)
    assert (code, stderr) == (0, "")

    # While nobody follows: retarget prod, label 1, remove 3, add 4.
    containerd.ctr(ns, "images", "tag", "--force", f"{APP}:2", f"{APP}:prod")
    containerd.ctr(ns, "images", "label", f"{APP}:1", "stage=old")
    containerd.ctr(ns, "images", "rm", f"{APP}:3")
    containerd.ctr(ns, "images", "tag", f"{APP}:2", f"{APP}:4")

    second = Follower(location, containerd.socket, tmp_path)
    followers.append(second)
    reconciled = second.status("connected")
    assert (reconciled["registered"], reconciled["deleted"]) == (3, 1)
    assert states(history(location, f"{APP}:prod", ns)) == [
        ("registered", one, {}),
        ("registered", two, {}),
    ]
    assert states(history(location, f"{APP}:1", ns)) == [
        ("registered", one, {}),
        ("registered", one, {"stage": "old"}),
    ]
    assert [e.kind for e in history(location, f"{APP}:3", ns)] == [
        "registered",
        "deleted",
    ]
    assert states(history(location, f"{APP}:4", ns)) == [("registered", two, {})]
    reasons = {
        e.reason
        for name in ("prod", "1", "3", "4")
        for e in history(location, f"{APP}:{name}", ns)
    }
    assert reasons == {"containerd reconcile"}
    with ImageStore.open(location) as store:
        assert [i.name for i in store.list(namespace=ns)] == [
            f"{APP}:1",
            f"{APP}:2",
            f"{APP}:4",
            f"{APP}:prod",
        ]
    assert second.stop()[0] == 0


def test_follower_reconnects_when_containerd_restarts(
    location: str, containerd: Containerd, followers: list[Follower], tmp_path: Path
) -> None:
    ns = "default"
    refs = oci_archive(tmp_path / "images.tar", {f"{APP}:1": 1, f"{APP}:2": 2})
    containerd.ctr(ns, "images", "import", "--no-unpack", str(tmp_path / "images.tar"))
    follower = Follower(location, containerd.socket, tmp_path, "-v")
    followers.append(follower)
    follower.status("connected")

    containerd.stop()
    follower.status("disconnected")
    containerd.start()
    again = follower.status("connected")
    assert (again["reconnects"], again["connected"]) == (1, True)

    containerd.ctr(ns, "images", "tag", f"{APP}:2", f"{APP}:after")
    wait_history(
        location, f"{APP}:after", ns, last_is("registered", refs[f"{APP}:2"]["digest"])
    )
    code, last, stderr = follower.stop()
    assert code == 0
    assert last["reconnects"] == 1
    assert stderr.count("Warning: containerd at") == 1  # once per outage
    assert "retrying" in stderr


def test_names_imageledger_refuses_are_counted_warned_once_and_reported(
    location: str, containerd: Containerd, followers: list[Follower], tmp_path: Path
) -> None:
    ns = "default"
    refs = oci_archive(tmp_path / "images.tar", {f"{APP}:1": 1})
    containerd.ctr(ns, "images", "import", "--no-unpack", str(tmp_path / "images.tar"))
    follower = Follower(location, containerd.socket, tmp_path, "-v")
    followers.append(follower)
    follower.status("connected")

    containerd.ctr(ns, "images", "tag", f"{APP}:1", "Registry.example/App:1")
    containerd.ctr(ns, "images", "label", "Registry.example/App:1", "x=y")
    containerd.ctr(ns, "images", "tag", f"{APP}:1", f"{APP}:fine")
    wait_history(
        location, f"{APP}:fine", ns, last_is("registered", refs[f"{APP}:1"]["digest"])
    )

    code, last, stderr = follower.stop()
    assert code == 0
    assert last["refused"] == 1
    [refused] = last["refusedNames"]
    assert (refused["namespace"], refused["name"]) == (ns, "Registry.example/App:1")
    assert "must be lowercase" in refused["problem"]
    warnings = [
        line for line in stderr.splitlines() if "Registry.example/App:1" in line
    ]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "Warning: containerd image 'Registry.example/App:1' in namespace 'default' "
        "not recorded: invalid name:"
    )
    with ImageStore.open(location) as store:
        assert [i.name for i in store.list(namespace=ns)] == [
            f"{APP}:1",
            f"{APP}:fine",
        ]


def test_follower_without_containerd_keeps_trying_and_stops_on_sigterm(
    location: str, followers: list[Follower], tmp_path: Path
) -> None:
    _require_containerd()
    socket = str(tmp_path / "nothing.sock")
    follower = Follower(location, socket, tmp_path)
    followers.append(follower)
    unreachable = follower.status("unreachable")
    assert (unreachable["connected"], unreachable["reconciles"]) == (False, 0)
    code, last, stderr = follower.stop()
    assert code == 0
    assert (last["connected"], last["reconciles"]) == (False, 0)
    assert stderr.startswith(f"Warning: containerd at '{socket}':")
    assert stderr.count("Warning:") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--reconcile-every", "-1"],
            "Error: invalid --reconcile-every: must be 0 to 604,800 seconds, not -1.0\n",
        ),
        (
            ["--reconcile-every", "nan"],
            "Error: invalid --reconcile-every: must be 0 to 604,800 seconds, not nan\n",
        ),
        (
            ["--reconcile-every", "1e300"],
            "Error: invalid --reconcile-every: must be 0 to 604,800 seconds, not 1e+300\n",
        ),
        (
            ["--namespace", "bad/ns"],
            "Error: invalid --namespace: 'bad/ns' must be letters and digits, "
            "optionally joined by single '.', '_' or '-'\n",
        ),
        (["--actor", ""], "Error: invalid --actor: must not be empty\n"),
    ],
)
def test_bad_arguments_exit_2_with_one_line_before_anything_runs(
    run: Any, args: list[str], message: str, tmp_path: Path
) -> None:
    result = run("follow", "containerd", "--address", str(tmp_path / "x.sock"), *args)
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


def test_missing_protos_exit_1_saying_what_to_install(run: Any, tmp_path: Path) -> None:
    result = run(
        "follow", "containerd", env={"IMAGELEDGER_CONTAINERD_PROTOS": str(tmp_path)}
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(
        f"Error: containerd's API protos are not under '{tmp_path}': cannot read"
    )
    assert "golang-github-containerd-containerd-dev" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_without_json_status_and_changes_go_to_stderr(
    location: str, containerd: Containerd, tmp_path: Path
) -> None:
    """People's form: one status line per step, one line per change with -v."""
    ns = "default"
    refs = oci_archive(tmp_path / "images.tar", {f"{APP}:1": 1})
    containerd.ctr(ns, "images", "import", "--no-unpack", str(tmp_path / "images.tar"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    process = subprocess.Popen(
        [
            *(str(SCRIPT), "--db", location, "follow", "containerd", "-v"),
            *("--address", containerd.socket, "--actor", ACTOR),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        digest = refs[f"{APP}:1"]["digest"]
        wait_history(location, f"{APP}:1", ns, last_is("registered", digest))
        containerd.ctr(ns, "images", "rm", f"{APP}:1")
        wait_history(location, f"{APP}:1", ns, last_is("deleted"))
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    where = f"containerd at '{containerd.socket}' (all namespaces)"
    assert (process.returncode, stdout) == (0, "")
    assert stderr.splitlines() == [
        f"registered default {APP}:1 {digest} (containerd reconcile)",
        f"reconciled: {where}: 1 registered, 0 deleted, 0 events, 0 refused, "
        "0 reconnects",
        f"connected: {where}: 1 registered, 0 deleted, 0 events, 0 refused, "
        "0 reconnects",
        f"deleted default {APP}:1 - (containerd /images/delete)",
        f"stopped: {where}: 1 registered, 1 deleted, 1 events, 0 refused, "
        "0 reconnects",
    ]


def test_a_follower_far_behind_drops_events_and_reconciles_instead(
    location: str,
    containerd: Containerd,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With at most one event waiting, a burst while the follower is busy
    overflows; the dropped events are covered by a reconcile, so the ledger
    still ends with every image."""
    from imageledger.follow import Change, Follower, Observer
    from imageledger.infrastructure.containerd import Client, load_api

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    api = load_api()
    ns, count = "burst", 20
    burst_done = threading.Event()

    class Slow(Observer):
        def changed(self, change: Change) -> None:
            # Busy on the first change until the whole burst was dropped or queued.
            burst_done.wait(DEADLINE)

    with ImageStore.open(location) as store:
        follower = Follower(
            store,
            api,
            containerd.socket,
            namespaces=[ns],
            actor=ACTOR,
            observer=Slow(),
            max_pending=1,
        )

        def burst() -> None:
            client = Client(containerd.socket, api)
            try:
                wait_for(lambda: follower.status.connected, "the follower")
                for i in range(count):
                    client.create(
                        ns,
                        f"{APP}:{i}",
                        {
                            "mediaType": MANIFEST,
                            "digest": f"sha256:{i:064x}",
                            "size": i + 1,
                        },
                    )
                wait_for(lambda: follower.status.dropped > 0, "dropped events")
                burst_done.set()
                wait_for(lambda: _names(location, ns) == count, "every image")
            finally:
                client.close()
                follower.stop()

        creator = threading.Thread(target=burst)
        creator.start()
        status = follower.run()
        creator.join()
    assert status.dropped > 0
    assert status.reconciles >= 2  # the one at start, and one for the dropped
    assert _names(location, ns) == count


def _names(location: str, namespace: str) -> int:
    with ImageStore.open(location) as store:
        return len(list(store.list(namespace=namespace)))
