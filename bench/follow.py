"""follow containerd under a burst: how far the follower lags behind containerd.

    python -m bench.follow [--count N]

Starts a containerd of its own (CRI disabled; root, state and socket in a
folder under /tmp; needs root), runs the follower in this process on a durable
SQLite store, then creates N images (default 1,000) as fast as containerd's
Images.Create takes them from 8 concurrent calls, in other threads. For each
image, the lag is from containerd's event timestamp to the follower's write
returning (one Images.Get and one durable register per event). The rate is the
images recorded over the time from the first event to the last write.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.table import Row, render
from imageledger import ImageStore
from imageledger.follow import Change, Follower, Observer, Status
from imageledger.infrastructure.containerd import Client, load_api

HEADER = ("case", "follower", "containerd", "ratio", "target", "met")
NAMESPACE = "bench"
CREATORS = 8  # concurrent Images.Create calls: a burst faster than one client
DEADLINE = 300.0


def missing() -> str | None:
    """Why this bench cannot run here, or None."""
    if shutil.which("containerd") is None or shutil.which("ctr") is None:
        return "containerd is not installed"
    if os.geteuid() != 0:
        return "containerd runs as root"
    try:
        load_api()
    except Exception as e:  # the extra or the protos are missing: say which
        return str(e)
    return None


def run(count: int = 1000) -> list[Row]:
    """Rows: the follower's rate against containerd's, its median and max lag."""
    folder = Path(tempfile.mkdtemp(prefix="il-bench-", dir="/tmp"))
    daemon = _start(folder)
    try:
        with ImageStore.open(folder / "follow.db") as store:
            return _measure(store, folder / "c.sock", count)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


class _Recorder(Observer):
    def __init__(self, count: int) -> None:
        self.changes: dict[str, Change] = {}
        self.connected = threading.Event()
        self.done = threading.Event()
        self._count = count

    def changed(self, change: Change) -> None:
        if change.event_at is not None:
            self.changes.setdefault(change.name, change)
        if len(self.changes) >= self._count:
            self.done.set()

    def status(self, status: Status, what: str) -> None:
        if what == "connected":
            self.connected.set()


def _measure(store: ImageStore, socket: Path, count: int) -> list[Row]:
    api = load_api()
    recorder = _Recorder(count)
    follower = Follower(
        store,
        api,
        str(socket),
        namespaces=[NAMESPACE],
        actor="containerd@bench",
        observer=recorder,
    )
    created: list[float] = []

    def burst() -> None:
        if not recorder.connected.wait(DEADLINE):
            follower.stop()
            return
        client = Client(str(socket), api)
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(CREATORS) as pool:
                names = (f"registry.example/burst:{i}" for i in range(count))
                done = pool.map(
                    lambda i_name: client.create(
                        NAMESPACE, i_name[1], _target(i_name[0])
                    ),
                    enumerate(names),
                )
                list(done)
            created.append(time.perf_counter() - started)
        finally:
            client.close()
        recorder.done.wait(DEADLINE)
        follower.stop()

    creator = threading.Thread(target=burst)
    creator.start()
    follower.run()  # in this thread: the store's connection is this thread's
    creator.join()
    changes = list(recorder.changes.values())
    if len(changes) < count or not created:
        raise RuntimeError(f"the follower recorded {len(changes)} of {count} creates")
    lags = sorted(c.recorded_at - (c.event_at or c.recorded_at) for c in changes)
    first = min(c.event_at or c.recorded_at for c in changes)
    last = max(c.recorded_at for c in changes)
    rate = count / (last - first)
    create_rate = count / created[0]
    return [
        Row(
            f"{count:,} Images.Create, recorded by the follower",
            f"{rate:,.0f}/s",
            f"{create_rate:,.0f}/s",
            rate / create_rate,
            "report",
            None,
        ),
        Row(
            "  lag behind containerd, median",
            f"{statistics.median(lags) * 1000:,.1f} ms",
            "-",
            float("nan"),
            "report",
            None,
        ),
        Row(
            "  lag behind containerd, max",
            f"{lags[-1] * 1000:,.1f} ms",
            "-",
            float("nan"),
            "report",
            None,
        ),
    ]


def _target(i: int) -> dict[str, object]:
    return {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": f"sha256:{i:064x}",
        "size": 1000 + i,
    }


def _start(folder: Path) -> subprocess.Popen[bytes]:
    socket = folder / "c.sock"
    disabled = [
        "io.containerd.grpc.v1.cri",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.devmapper",
    ]
    config = folder / "config.toml"
    config.write_text(
        f'version = 2\nroot = "{folder / "root"}"\nstate = "{folder / "state"}"\n'
        f"disabled_plugins = {json.dumps(disabled)}\n"
        f'[grpc]\n  address = "{socket}"\n[ttrpc]\n  address = "{socket}.ttrpc"\n'
    )
    with (folder / "containerd.log").open("wb") as log:
        daemon = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=log
        )
    deadline = time.monotonic() + 60
    while subprocess.run(
        ["ctr", "--address", str(socket), "version"], capture_output=True, check=False
    ).returncode:
        if time.monotonic() > deadline or daemon.poll() is not None:
            daemon.kill()
            raise RuntimeError(f"containerd did not start: see {folder}")
        time.sleep(0.05)
    return daemon


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.follow")
    parser.add_argument("--count", type=int, default=1000, help="images to create")
    args = parser.parse_args()
    reason = missing()
    if reason:
        print(f"follow containerd: skipped ({reason})")
        return
    render(run(max(1, args.count)), header=HEADER)


if __name__ == "__main__":
    main()
