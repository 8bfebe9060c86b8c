"""Whole-process start-up of the command line, against `python -c pass` and ctr.

Each case runs as fresh processes, taking turns with its baseline (one of
each per round), so both see the same machine; a row gives the median and
the minimum over the rounds, and the ratio of imageledger's to the
baseline's. The baseline is this interpreter (`sys.executable -c pass`):
the one the `imageledger` script runs on, so the ratio is what imageledger
adds to starting Python.

Where `ctr` and `containerd` are installed and this runs as root, it also
starts a containerd of its own (root, state and socket in a temporary
folder, the CRI plugin disabled), imports one small image into it, and
compares `get` with `ctr images ls name==NAME` and `register` with
`ctr images tag --force`; otherwise it prints why it skips them.

Run alone: `python -m bench.cold_start [--runs N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.table import Row, render
from imageledger import ImageStore

SCRIPT = Path(sys.executable).with_name("imageledger")
INDEX = "application/vnd.oci.image.index.v1+json"
PASS = [sys.executable, "-c", "pass"]
READ_TARGET = 3.0  # get, list, history: at most 3x `python -c pass`
WRITE_TARGET = 5.0  # register: at most 5x


def run(runs: int = 21) -> list[Row]:
    """The rows: get, list, history and register against `python -c pass`,
    then against ctr where it can run."""
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="imageledger-cold-") as folder:
        path = Path(folder) / "cold.db"
        _fill(path)
        cli = [str(SCRIPT), "--db", str(path)]
        cases = [
            ("get NAME", [*cli, "get", "app:prod"], READ_TARGET),
            ("list", [*cli, "list"], READ_TARGET),
            ("history NAME", [*cli, "history", "app:prod"], READ_TARGET),
            ("register NAME", _changing_register(cli), WRITE_TARGET),
        ]
        for name, command, target in cases:
            rows += _rows(
                f"imageledger {name}", "python -c pass", command, target, runs
            )
        rows += _against_ctr(cli, runs)
    return rows


def _fill(path: Path) -> None:
    """A store with a handful of images, each moved a few times."""
    with ImageStore.open(path) as store:
        for n in range(5):
            for version in range(3):
                store.register(
                    "app:prod" if n == 0 else f"app:{n}",
                    _descriptor(n * 10 + version),
                    {"team": "web"},
                    reason=f"release {version}",
                )


def _descriptor(n: int) -> dict[str, object]:
    return {"mediaType": INDEX, "digest": "sha256:" + f"{n:02x}" * 32, "size": 1733}


def _rows(
    case: str,
    baseline_name: str,
    command: list[str] | Iterator[list[str]],
    target: float,
    runs: int,
    baseline: list[str] | Iterator[list[str]] = PASS,
) -> list[Row]:
    """Median and minimum rows of `command` against `baseline`, alternating."""
    ours, theirs = [], []
    for round_ in range(runs):
        ours.append(_timed(_nth(command, round_)))
        theirs.append(_timed(_nth(baseline, round_)))
    rows = []
    for how, pick in (("median", statistics.median), ("minimum", min)):
        ratio = pick(ours) / pick(theirs)
        rows.append(
            Row(
                f"{case}, whole process ({how} of {runs}; vs {baseline_name})",
                f"{pick(ours) * 1000:,.0f} ms",
                f"{pick(theirs) * 1000:,.0f} ms",
                ratio,
                f"<= {target:g}x",
                ratio <= target,
            )
        )
    return rows


def _nth(command: list[str] | Iterator[list[str]], round_: int) -> list[str]:
    if isinstance(command, list):
        return command
    return next(command)


def _changing_register(cli: list[str]) -> Iterator[list[str]]:
    """Registers that each write: the name moves to a new digest every time."""
    n = 0
    while True:
        n += 1
        yield [
            *cli,
            "register",
            "app:next",
            "--media-type",
            INDEX,
            "--size",
            "1733",
            "--digest",
            "sha256:" + hashlib.sha256(str(n).encode()).hexdigest(),
        ]


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


# Against ctr, on a containerd of our own.


def _against_ctr(cli: list[str], runs: int) -> list[Row]:
    why = _cannot_run_containerd()
    if why:
        print(f"cold start: not comparing with ctr: {why}", file=sys.stderr)
        return []
    with _containerd() as ctr:
        if ctr is None:
            return []
        reference = "docker.io/library/app:prod"
        subprocess.run(
            [*ctr, "images", "tag", "--force", reference, "docker.io/library/app:x"],
            check=True,
            capture_output=True,
        )
        rows = _rows(
            "imageledger get NAME",
            "ctr images ls name==NAME",
            [*cli, "get", "app:prod"],
            READ_TARGET,
            runs,
            [*ctr, "images", "ls", f"name=={reference}"],
        )
        rows += _rows(
            "imageledger register NAME",
            "ctr images tag",
            _changing_register(cli),
            WRITE_TARGET,
            runs,
            [*ctr, "images", "tag", "--force", reference, "docker.io/library/app:x"],
        )
        return [Row(r.case, r.value, r.baseline, r.ratio, "report", None) for r in rows]


def _cannot_run_containerd() -> str | None:
    if shutil.which("ctr") is None or shutil.which("containerd") is None:
        return "ctr or containerd is not installed"
    if os.geteuid() != 0:
        return "starting a containerd needs root"
    return None


@contextmanager
def _containerd() -> Iterator[list[str] | None]:
    """A containerd in a temporary folder, with one image imported; the ctr
    command line that talks to it (None, with a note, if it did not start)."""
    with tempfile.TemporaryDirectory(prefix="imageledger-containerd-") as folder:
        base = Path(folder)
        socket = base / "containerd.sock"
        config = base / "config.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{base / "root"}"\n'
            f'state = "{base / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{socket}"\n'
            f'[ttrpc]\n  address = "{socket}.ttrpc"\n'
        )
        log = (base / "containerd.log").open("wb")
        server = subprocess.Popen(
            ["containerd", "--config", str(config)], stdout=log, stderr=log
        )
        try:
            ctr = ["ctr", "--address", str(socket), "--namespace", "bench"]
            if not _wait_for(ctr, server):
                print(
                    "cold start: not comparing with ctr: containerd did not start "
                    f"(see {log.name})",
                    file=sys.stderr,
                )
                yield None
                return
            archive = base / "app.tar"
            archive.write_bytes(_oci_archive())
            base_name = ["--base-name", "docker.io/library/app"]
            subprocess.run(
                [*ctr, "images", "import", *base_name, "--no-unpack", str(archive)],
                check=True,
                capture_output=True,
            )
            yield ctr
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            log.close()


def _wait_for(ctr: list[str], server: subprocess.Popen[bytes]) -> bool:
    """Whether containerd answers within a minute (False if it exits first)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        answered = subprocess.run([*ctr, "version"], capture_output=True, check=False)
        if answered.returncode == 0:
            return True
        time.sleep(0.1)
    return False


def _oci_archive() -> bytes:
    """An OCI image layout tar of one tiny image named `prod`: a config and a
    manifest without layers (containerd imports it without unpacking)."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers"}}
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": _blob_descriptor(
                "application/vnd.oci.image.config.v1+json", config
            ),
            "layers": [],
        }
    ).encode()
    entry = _blob_descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    entry["annotations"] = {"org.opencontainers.image.ref.name": "prod"}
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode(),
        f"blobs/sha256/{hashlib.sha256(config).hexdigest()}": config,
        f"blobs/sha256/{hashlib.sha256(manifest).hexdigest()}": manifest,
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _blob_descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {
        "mediaType": media_type,
        "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start")
    parser.add_argument("--runs", type=int, default=21, help="rounds per case")
    render(run(max(1, parser.parse_args().runs)))
