"""The OCI descriptor: every field's rule, and an exact OCI JSON round trip."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from conftest import INDEX, MANIFEST, descriptor, digest
from imageledger import Descriptor
from imageledger.domain.descriptor import MAX_DESCRIPTOR_BYTES
from imageledger.errors import InvalidArgument

HELLO = b"hello"
HELLO_DIGEST = "sha256:" + hashlib.sha256(HELLO).hexdigest()

FULL: dict[str, Any] = {
    "mediaType": INDEX,
    "digest": digest(7),
    "size": 1234,
    "urls": ["https://mirror.example/blobs/x", "oci://other"],
    "annotations": {"org.opencontainers.image.ref.name": "3.20", "empty": ""},
    "artifactType": "application/vnd.example.sbom+json",
    "platform": {
        "architecture": "arm64",
        "os": "windows",
        "os.version": "10.0.17763.1457",
        "os.features": ["win32k"],
        "variant": "v8",
        "features": ["sse4"],
    },
}

# Fields the image-spec does not define: kept, whatever JSON they hold.
UNKNOWN: dict[str, Any] = {
    "foo.example/x": 1,
    "mediatype": MANIFEST,  # not mediaType: another field
    "media_type": "x",  # the Python name is no OCI name either
    "nothing": None,
    "nested": {"b": [1, -2.5, True, None, {"c": "牛"}], "a": {}},
    "big": 2**64 - 1,
    "small": -(2**63),
}
NESTED_64: Any = "deepest"
for _ in range(64):
    NESTED_64 = [NESTED_64]
NESTED_65 = [NESTED_64]

VALID = [
    descriptor(1),
    FULL,
    descriptor(8, **UNKNOWN),
    {**FULL, "future": NESTED_64, "platform": {**FULL["platform"], "osVersion": "1"}},
    {"mediaType": MANIFEST, "digest": digest(2), "size": 0},
    {"mediaType": MANIFEST, "digest": digest(3), "size": 2**63 - 1},
    {"mediaType": MANIFEST, "digest": "sha384:" + "a" * 96, "size": 1},
    {"mediaType": MANIFEST, "digest": "sha512:" + "b" * 128, "size": 1},
    {"mediaType": MANIFEST, "digest": "blake3:" + "c" * 64, "size": 1},
    {"mediaType": MANIFEST, "digest": "future+algo.x-y_z:Ab=_-", "size": 1},
    {
        "mediaType": MANIFEST,
        "digest": HELLO_DIGEST,
        "size": 5,
        "data": base64.b64encode(HELLO).decode(),
    },
    {"mediaType": MANIFEST, "digest": digest(4), "size": 1, "annotations": {}},
    {"mediaType": MANIFEST, "digest": digest(5), "size": 1, "urls": []},
    {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "digest": digest(6),
        "size": 1,
    },
]


@pytest.mark.parametrize("oci", VALID)
def test_valid_descriptors_round_trip_as_the_same_oci_json(oci: dict[str, Any]) -> None:
    assert Descriptor.from_oci(oci).to_oci() == oci


@pytest.mark.parametrize("oci", VALID)
def test_the_shortcut_for_plain_descriptors_builds_what_validation_builds(
    oci: dict[str, Any],
) -> None:
    checked = Descriptor.from_oci(oci)
    validated = Descriptor.model_validate(oci)
    assert checked == validated
    assert checked.model_fields_set == validated.model_fields_set
    assert checked.to_oci() == validated.to_oci() == oci


def test_python_attributes_are_snake_case_and_json_is_camel_case() -> None:
    d = Descriptor.from_oci(FULL)
    assert d.media_type == INDEX
    assert d.artifact_type == "application/vnd.example.sbom+json"
    assert d.platform is not None and d.platform.os_version == "10.0.17763.1457"
    assert set(d.to_oci()) == set(FULL)


def test_descriptors_are_frozen_values() -> None:
    d = Descriptor.from_oci(descriptor(1))
    assert d == Descriptor.from_oci(descriptor(1))
    with pytest.raises(Exception, match="frozen"):
        d.size = 2  # type: ignore[misc]


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"digest": digest(1), "size": 1}, "target.mediaType", "is required"),
    ({"mediaType": MANIFEST, "size": 1}, "target.digest", "is required"),
    ({"mediaType": MANIFEST, "digest": digest(1)}, "target.size", "is required"),
    (descriptor(1, mediaType="manifest"), "target.mediaType", "is not a media type"),
    (
        descriptor(1, mediaType="a/b; charset=utf-8"),
        "target.mediaType",
        "no parameters",
    ),
    (descriptor(1, mediaType="/json"), "target.mediaType", "is not a media type"),
    (
        descriptor(1, mediaType="a/" + "b" * 128),
        "target.mediaType",
        "is not a media type",
    ),
    (descriptor(1, mediaType=5), "target.mediaType", "must be a string"),
    (descriptor(1, digest="sha256"), "target.digest", "algorithm:encoded"),
    (descriptor(1, digest="SHA256:" + "a" * 64), "target.digest", "algorithm 'SHA256'"),
    (descriptor(1, digest="sha256:" + "a" * 63), "target.digest", "64 lowercase hex"),
    (descriptor(1, digest="sha256:" + "A" * 64), "target.digest", "64 lowercase hex"),
    (descriptor(1, digest="sha384:" + "a" * 64), "target.digest", "96 lowercase hex"),
    (descriptor(1, digest="sha512:" + "a" * 64), "target.digest", "128 lowercase hex"),
    (descriptor(1, digest="blake3:" + "g" * 64), "target.digest", "64 lowercase hex"),
    (descriptor(1, digest="x:a+b"), "target.digest", "encoded part 'a+b'"),
    (descriptor(1, digest="a__b:abc"), "target.digest", "algorithm 'a__b'"),
    (descriptor(1, size=-1), "target.size", "must not be negative"),
    (descriptor(1, size=2**63), "target.size", "must be at most"),
    (descriptor(1, size="10"), "target.size", "must be an integer"),
    (descriptor(1, size=1.0), "target.size", "must be an integer"),
    (descriptor(1, size=True), "target.size", "must be an integer"),
    (descriptor(1, urls=["relative/path"]), "target.urls", "not an absolute URI"),
    (descriptor(1, urls=["https://a b"]), "target.urls", "not an absolute URI"),
    (descriptor(1, urls=["https:"]), "target.urls", "not an absolute URI"),
    (descriptor(1, urls="https://x"), "target.urls", "must be a list"),
    (
        descriptor(1, annotations={"": "x"}),
        "target.annotations",
        "keys must not be empty",
    ),
    (descriptor(1, annotations={"a": 1}), "target.annotations.a", "must be a string"),
    (descriptor(1, annotations=["a"]), "target.annotations", "must be an object"),
    (descriptor(1, data="aGVsbG8"), "target.data", "not valid base64"),
    (descriptor(1, data="aGVsbG8=\n"), "target.data", "not valid base64"),
    (
        {"mediaType": MANIFEST, "digest": HELLO_DIGEST, "size": 6, "data": "aGVsbG8="},
        "target.data",
        "decodes to 5 bytes but size is 6",
    ),
    (
        {"mediaType": MANIFEST, "digest": digest(1), "size": 5, "data": "aGVsbG8="},
        "target.data",
        "does not hash to",
    ),
    (
        {
            "mediaType": MANIFEST,
            "digest": "blake3:" + "a" * 64,
            "size": 5,
            "data": "aGVsbG8=",
        },
        "target.data",
        "cannot be checked against a blake3",
    ),
    (descriptor(1, artifactType="sbom"), "target.artifactType", "is not a media type"),
    (
        descriptor(1, artifactType=None),
        "target.artifactType",
        "omitted rather than null",
    ),
    (
        descriptor(1, platform={"os": "linux"}),
        "target.platform.architecture",
        "is required",
    ),
    (
        descriptor(1, platform={"architecture": "amd64"}),
        "target.platform.os",
        "is required",
    ),
    (
        descriptor(1, platform={"architecture": "", "os": "linux"}),
        "target.platform.architecture",
        "must not be empty",
    ),
    (
        descriptor(
            1, platform={"architecture": "amd64", "os": "linux", "os.version": 3}
        ),
        "target.platform.os.version",
        "must be a string",
    ),
    (
        descriptor(1, future=float("nan")),
        "target",
        "unknown field 'future' holds a number that is not finite",
    ),
    (
        descriptor(1, future=[1, 2**64]),
        "target",
        "unknown field 'future' holds an integer beyond 64 bits",
    ),
    (
        descriptor(1, future={1: "x"}),
        "target",
        "unknown field 'future' holds an object whose keys are not all strings",
    ),
    (
        descriptor(1, future={"x"}),
        "target",
        "unknown field 'future' holds a set, which is not JSON",
    ),
    (
        descriptor(1, future=NESTED_65),
        "target",
        "unknown field 'future' is nested more than 64 deep",
    ),
    (descriptor(1, future="\udcff"), "target", "not valid UTF-8"),
    (
        descriptor(
            1, platform={"architecture": "amd64", "os": "linux", "x": float("inf")}
        ),
        "target.platform",
        "unknown field 'x' holds a number that is not finite",
    ),
    (
        descriptor(1, artifactType=None, future=None),
        "target.artifactType",
        "must be omitted rather than null",
    ),
    (descriptor(1, annotations={"a": "\udcff"}), "target", "not valid UTF-8"),
    (
        descriptor(1, annotations={"a": "x" * MAX_DESCRIPTOR_BYTES}),
        "target",
        f"at most {MAX_DESCRIPTOR_BYTES} allowed",
    ),
]


@pytest.mark.parametrize(("oci", "field", "rule"), INVALID)
def test_invalid_descriptors_name_the_field_and_the_rule(
    oci: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Descriptor.from_oci(oci)
    assert caught.value.field == field
    assert rule in caught.value.rule


@pytest.mark.parametrize("value", [None, "sha256:x", 3, [descriptor(1)]])
def test_a_target_that_is_not_an_object_is_refused(value: object) -> None:
    with pytest.raises(InvalidArgument, match="target: must be a descriptor object"):
        Descriptor.from_oci(value)


@pytest.mark.parametrize("oci", VALID)
def test_rebuilding_stored_json_gives_the_same_frozen_value(
    oci: dict[str, Any],
) -> None:
    validated = Descriptor.from_oci(oci)
    rebuilt = Descriptor.from_stored(validated.to_oci())
    assert rebuilt == validated
    assert rebuilt.to_oci() == oci
    assert rebuilt.model_fields_set == validated.model_fields_set
    assert rebuilt.platform == validated.platform
    with pytest.raises(Exception, match="frozen"):
        rebuilt.size = 2  # type: ignore[misc]
