"""Descriptor fields the image-spec does not define are kept, on both backends.

The spec says readers MUST NOT error on unknown properties: such a field is
registered, stored in the event (so the hash chain covers it), and comes back
exactly from `get`, `--json`, an export and its import, and export-layout.
Descriptors without one keep the bytes they always had.
"""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import orjson

from conftest import INDEX, Rows, Run, descriptor, ok
from imageledger import Descriptor, ImageStore
from imageledger.domain.image import ImageName
from imageledger.infrastructure.mapper import LedgerMapper

FUTURE: dict[str, Any] = descriptor(
    1,
    **{
        "foo.example/x": 1,
        "other.tool": {"list": [1, 2.5, None, True], "text": "牛"},
        "platform": {"architecture": "arm64", "os": "linux", "os.future": ["x"]},
    },
)


def test_a_descriptor_with_unknown_fields_registers_and_comes_back_exactly(
    store: ImageStore, log_rows: Rows
) -> None:
    registered = store.register("app:1", FUTURE)
    assert registered.target.to_oci() == FUTURE
    assert store.get("app:1").target.to_oci() == FUTURE
    assert [image.target.to_oci() for image in store.list()] == [FUTURE]
    state = orjson.loads(log_rows()[-1][4])
    assert state["target"] == FUTURE  # in the event's bytes, under the chain
    assert store.register("app:1", FUTURE).version == 1  # the same: no event
    changed = {**FUTURE, "foo.example/x": 2}
    assert store.register("app:1", changed).version == 2
    assert store.as_of(1).get("app:1").target.to_oci() == FUTURE
    assert store.replay()[("default", "app:1")].target.to_oci() == changed
    assert store.verify().events == 2


def test_export_and_import_keep_unknown_fields_and_the_chain(
    store: ImageStore, new_location: Any
) -> None:
    store.register("app:1", FUTURE)
    store.register("app:2", descriptor(2, annotations={"a": "b"}))
    out = io.BytesIO()
    store.export_log(out)
    assert json.loads(out.getvalue().splitlines()[0])["target"] == FUTURE
    with ImageStore.open(new_location()) as copy:
        assert copy.import_log(io.BytesIO(out.getvalue())) == 2
        assert copy.get("app:1").target.to_oci() == FUTURE
        assert copy.checkpoint() == store.checkpoint()


def test_export_layout_writes_unknown_fields_and_they_import_back(
    store: ImageStore, tmp_path: Path
) -> None:
    store.register("docker.io/library/app:1", FUTURE)
    assert store.export_layout(tmp_path / "layout") == 1
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    entry = index["manifests"][0]
    assert {k: v for k, v in entry.items() if k != "annotations"} == FUTURE
    result = store.import_layout(
        tmp_path / "layout", namespace="copy", actor="ci", reason=None,
        base_name=None, check_blobs=False,
    )  # fmt: skip
    assert [image.name for image in result.registered] == ["docker.io/library/app:1"]
    copied = store.get("docker.io/library/app:1", namespace="copy").target.to_oci()
    assert {k: v for k, v in copied.items() if k != "annotations"} == FUTURE


def test_the_cli_registers_and_prints_unknown_fields(run: Run, tmp_path: Path) -> None:
    (tmp_path / "desc.json").write_text(json.dumps(FUTURE))
    ok(run("register", "app:1", "--descriptor", "desc.json"))
    printed = json.loads(ok(run("--json", "get", "app:1")))
    assert printed["target"] == FUTURE
    listed = ok(run("--json", "list")).splitlines()
    assert [json.loads(line)["target"] for line in listed] == [FUTURE]


def test_the_cli_refuses_an_unknown_field_a_store_cannot_keep(
    run: Run, tmp_path: Path
) -> None:
    (tmp_path / "desc.json").write_text(json.dumps(descriptor(1))[:-1] + ', "x": NaN}')
    result = run("register", "app:1", "--descriptor", "desc.json")
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "Error: invalid target: unknown field 'x' holds a number that is not finite\n",
    )
    assert ok(run("list", "-q")) == ""


# Stores made before unknown fields were kept must still verify: an event of
# any descriptor without one encodes to the bytes it always did.

KNOWN_FIELDS = {
    "mediaType": INDEX,
    "digest": "sha256:" + "ab" * 32,
    "size": 1733,
    "urls": ["https://example.com/blob"],
    "annotations": {"org.opencontainers.image.ref.name": "1.0", "b": ""},
    "artifactType": "application/vnd.example+json",
    "platform": {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "os.version": "10",
        "os.features": ["f"],
        "features": ["g"],
    },
}
# Written by the code before this change, for the event below.
KNOWN_STATE = (
    '{"actor":"ci","labels":{"team":"web"},"name":"app:1.0","namespace":"default",'
    '"reason":"release","target":{"annotations":{"b":"","org.opencontainers.image.'
    'ref.name":"1.0"},"artifactType":"application/vnd.example+json","digest":"sha256:'
    + "ab"
    * 32
    + '","mediaType":"application/vnd.oci.image.index.v1+json","platform":{"architec'
    'ture":"arm64","features":["g"],"os":"linux","os.features":["f"],"os.version":'
    '"10","variant":"v8"},"size":1733,"urls":["https://example.com/blob"]},'
    '"timestamp":"2026-11-28T21:31:20.052266+00:00"}'
)


def registered(target: dict[str, Any]) -> ImageName.Registered:
    event = object.__new__(ImageName.Registered)
    object.__setattr__(
        event,
        "__dict__",
        {
            "originator_id": UUID(int=1),
            "originator_version": 1,
            "timestamp": datetime(2026, 11, 28, 21, 31, 20, 52266, tzinfo=UTC),
            "namespace": "default",
            "name": "app:1.0",
            "actor": "ci",
            "reason": "release",
            "target": Descriptor.from_oci(target),
            "labels": {"team": "web"},
            "immutable": False,
        },
    )
    return event


def test_an_event_without_unknown_fields_keeps_its_bytes() -> None:
    state = LedgerMapper().to_stored_event(registered(KNOWN_FIELDS)).state
    assert state == KNOWN_STATE.encode()
    assert hashlib.sha256(state).hexdigest() == (
        "79d0f4d6aee135ab5fbc6221dee41c552cb1b04d601fd9633f1f0959d3bc5547"
    )
    plain = LedgerMapper().to_stored_event(registered(descriptor(1))).state
    assert orjson.loads(plain)["target"] == descriptor(1)
    assert b'"target":{"digest":"sha256:' + b"0" * 63 + b'1",' in plain


def test_an_event_with_unknown_fields_decodes_to_the_same_descriptor() -> None:
    mapper = LedgerMapper()
    stored = mapper.to_stored_event(registered(FUTURE))
    decoded = mapper.to_domain_event(stored)
    assert isinstance(decoded, ImageName.Registered)
    assert decoded.target.to_oci() == FUTURE
    assert mapper.to_stored_event(decoded).state == stored.state
