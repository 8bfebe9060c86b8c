"""A real Distribution registry (Debian's `docker-registry` 2.8) notifying a
real `imageledger serve`: images pushed with skopeo from OCI layouts built
here, a tag re-pushed at new content, a manifest deleted, and `serve`
restarted while the registry keeps pushing. Each tag's history must list
exactly the digests pushed to it, in order, each once."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from serving import READ, Server, start, wait_for, write_tokens

REGISTRY = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")

# CI installs both: there a missing one fails the test instead of skipping it.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        (REGISTRY is None or SKOPEO is None) and os.environ.get("CI") != "true",
        reason="needs Debian's docker-registry and skopeo (apt-get install "
        "docker-registry skopeo; .ci/run installs them)",
    ),
]

NOTIFY_TOKEN = "registry-notify-token"
TOKENS = {
    NOTIFY_TOKEN: ("write", "registry"),
    READ: ("read", "auditor"),
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def blob(folder: Path, data: bytes) -> dict[str, Any]:
    """Store `data` in the layout's blobs; its digest and size."""
    digest = hashlib.sha256(data).hexdigest()
    path = folder / "blobs" / "sha256" / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layout(folder: Path, tag: str, content: str) -> str:
    """Write an OCI image layout with one image (a config, one layer holding a
    file with `content`) tagged `tag`; return the manifest's digest."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = content.encode()
        member = tarfile.TarInfo("content.txt")
        member.size = len(data)
        member.mtime = 0
        tar.addfile(member, io.BytesIO(data))
    layer_tar = raw.getvalue()
    layer = blob(folder, gzip.compress(layer_tar, mtime=0))
    config = blob(
        folder,
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {
                    "type": "layers",
                    "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
                },
            }
        ).encode(),
    )
    manifest = blob(
        folder,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    **config,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        **layer,
                    }
                ],
            }
        ).encode(),
    )
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (folder / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        **manifest,
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    digest: str = manifest["digest"]
    return digest


class Registry:
    """`docker-registry serve CONFIG` on a loopback port, notifying `serve_port`."""

    def __init__(self, folder: Path, serve_port: int) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = folder / "registry.yml"
        url = (
            f"http://127.0.0.1:{serve_port}/v1/notifications/distribution"
            "?namespace=default"
        )
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {
                        "filesystem": {"rootdirectory": str(folder / "storage")},
                        "delete": {"enabled": True},
                    },
                    "http": {"addr": self.host},
                    "notifications": {
                        "endpoints": [
                            {
                                "name": "ledger",
                                "url": url,
                                "headers": {
                                    "Authorization": [f"Bearer {NOTIFY_TOKEN}"]
                                },
                                "timeout": "2s",
                                "threshold": 1,
                                "backoff": "200ms",
                            }
                        ]
                    },
                }
            )
        )
        self.log = (folder / "registry.log").open("wb")
        self.process = subprocess.Popen(
            [str(REGISTRY), "serve", str(config)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._answers, "the registry to answer /v2/")

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"docker-registry exited {self.process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)
        self.log.close()


def skopeo(*args: str) -> None:
    result = subprocess.run(
        [str(SKOPEO), "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_a_registry_s_pushes_and_deletes_become_each_tag_s_history(
    location: str, tmp_path: Path
) -> None:
    serve_port = free_port()
    tokens = write_tokens(tmp_path / "tokens", TOKENS)
    serve_args = ("--port", str(serve_port))
    server: Server = start(location, *serve_args, token_file=tokens)
    registry = Registry(tmp_path, serve_port)
    digests: dict[str, str] = {}

    def push(repository: str, tag: str, content: str) -> str:
        source = tmp_path / "layouts" / f"{repository}-{tag}-{content}"
        source.mkdir(parents=True)
        digests[content] = layout(source, tag, content)
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{source}:{tag}",
            f"docker://{registry.host}/{repository}:{tag}",
        )
        return digests[content]

    def registered(tag: str) -> list[str]:
        reply = server.call(
            "GET", f"/v1/namespaces/default/history/{registry.host}/{tag}", token=READ
        )
        if reply.status == 404:
            return []
        assert reply.status == 200, reply.body
        return [
            "deleted" if e["target"] is None else e["target"]["digest"]
            for e in reply.json()["entries"]
        ]

    def history_is(tag: str, expected: list[str]) -> bool:
        return registered(tag) == expected

    try:
        a = push("team/app", "1.0", "a")
        b = push("team/app", "latest", "b")
        c = push("team/app", "1.0", "c")  # the tag moves to new content
        push("other", "1.0", "a")
        wait_for(lambda: history_is("team/app:1.0", [a, c]), "app:1.0 at a, then c")
        wait_for(lambda: history_is("team/app:latest", [b]), "app:latest at b")
        skopeo(
            "delete", "--tls-verify=false", f"docker://{registry.host}/team/app:latest"
        )
        wait_for(lambda: history_is("team/app:latest", [b, "deleted"]), "the delete")

        # serve goes away; the registry keeps pushing and retries until it is back.
        assert server.stop() == 0
        d = push("team/app", "2.0", "d")
        e = push("team/app", "latest", "e")
        server = start(location, *serve_args, token_file=tokens)
        wait_for(lambda: history_is("team/app:2.0", [d]), "app:2.0 after the restart")
        wait_for(
            lambda: history_is("team/app:latest", [b, "deleted", e]),
            "app:latest after the restart",
        )
        f = push("team/app", "1.0", "f")
        wait_for(lambda: history_is("team/app:1.0", [a, c, f]), "app:1.0 at f")
        assert registered("other:1.0") == [a]
    finally:
        registry.stop()
        server.stop()

    # Each registry event is recorded once: no event id in two reasons.
    with_ids = []
    for tag in ("team/app:1.0", "team/app:latest", "team/app:2.0", "other:1.0"):
        lines = _history_body(location, f"{registry.host}/{tag}").splitlines()
        entries = [json.loads(line) for line in lines]
        with_ids += [entry["reason"].split(":")[0] for entry in entries]
    assert len(with_ids) == len(set(with_ids)) == 8


def _history_body(location: str, name: str) -> str:
    from conftest import SCRIPT

    result = subprocess.run(
        [str(SCRIPT), "--db", location, "--json", "history", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout
