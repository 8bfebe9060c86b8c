"""import_layout on both backends: naming, the one batch, re-imports, labels,
and layouts that real tools made.

The layouts are real: built here with blobs whose sha256 is right, or made by
umoci and skopeo (tests/fixtures, see its README). Each import is compared
with the raw `index.json` entries it read, key for key. Malformed layouts are
in test_layout_files.py, export in test_layout_export.py; the helpers here
build layouts for all of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import INDEX, MANIFEST, Rows, descriptor
from imageledger import ImageStore
from imageledger.errors import InvalidArgument
from imageledger.transfer import image_name

FIXTURES = Path(__file__).resolve().parent / "fixtures"
UMOCI_1_0 = "sha256:6d0e30c6726659b51e95209027d50427b658b0c570a8b66d56aa3d7f351c3349"
UMOCI_1_1 = "sha256:5e56b587ce0f1bc1333df6f56117ab8d3efdbf33cb243e8d2d6c12b8797e73ef"
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


def put_blob(root: Path, content: bytes) -> dict[str, Any]:
    """Store `content` in root's blobs/sha256; its digest and size."""
    encoded = hashlib.sha256(content).hexdigest()
    (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / "sha256" / encoded).write_bytes(content)
    return {"digest": f"sha256:{encoded}", "size": len(content)}


def entry(
    root: Path, n: int, media_type: str = MANIFEST, **extra: Any
) -> dict[str, Any]:
    """An index.json entry whose blob (a small manifest, different for every n) is in root."""
    content = json.dumps({"schemaVersion": 2, "mediaType": media_type, "n": n}).encode()
    return {"mediaType": media_type, **put_blob(root, content), **extra}


def make_layout(root: Path, entries: list[dict[str, Any]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (root / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": entries})
    )
    return root


def rich_layout(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Named manifests and indexes, with platforms, annotations and the rest."""
    root.mkdir()
    entries = [
        entry(root, 1, annotations={REF_NAME: "1.0"}),
        entry(
            root,
            2,
            annotations={REF_NAME: "1.0-arm64", "org.example.team": "web"},
            platform={"architecture": "arm64", "os": "linux", "variant": "v8"},
        ),
        entry(
            root,
            3,
            INDEX,
            annotations={IMAGE_NAME: "registry.example/app:multi", REF_NAME: "multi"},
            urls=["https://mirror.example/blobs/3"],
        ),
        entry(
            root,
            4,
            artifactType="application/vnd.example.sbom+json",
            annotations={REF_NAME: "sbom"},
            platform={
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.1",
                "os.features": ["win32k"],
            },
        ),
        entry(root, 5),  # no name at all
    ]
    return make_layout(root, entries), entries


def stored(store: ImageStore, name: str, namespace: str = "default") -> dict[str, Any]:
    return store.get(name, namespace=namespace).target.to_oci()


def test_import_registers_each_named_entry_with_its_descriptor_exactly_as_written(
    store: ImageStore, tmp_path: Path
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    result = store.import_layout(
        layout, base_name="docker.io/library/app", actor="ci", reason="import"
    )
    names = [image.name for image in result.registered]
    assert names == [
        "docker.io/library/app:1.0",
        "docker.io/library/app:1.0-arm64",
        "registry.example/app:multi",
        "docker.io/library/app:sbom",
    ]
    assert (result.unchanged, result.skipped) == ([], 1)
    written = json.loads((layout / "index.json").read_bytes())["manifests"]
    for name, raw in zip(names, written, strict=False):
        assert stored(store, name) == raw
        assert set(stored(store, name)) == set(raw)  # the same keys, none added
    assert [h.reason for h in store.history(names[0])] == ["import"]


def test_the_containerd_name_annotation_wins_over_the_ref_name_and_the_base_name(
    store: ImageStore, tmp_path: Path
) -> None:
    root = tmp_path / "layout"
    raw = entry(root, 1, annotations={IMAGE_NAME: "quay.io/x/y:2", REF_NAME: "1"})
    result = store.import_layout(make_layout(root, [raw]), base_name="docker.io/z")
    assert [i.name for i in result.registered] == ["quay.io/x/y:2"]
    assert stored(store, "quay.io/x/y:2") == raw


def test_without_a_base_name_bare_tags_are_skipped_and_counted(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    result = store.import_layout(layout)
    assert [i.name for i in result.registered] == ["registry.example/app:multi"]
    assert result.skipped == 4
    assert len(log_rows()) == 1


@pytest.mark.parametrize(
    ("annotations", "base", "name"),
    [
        ({IMAGE_NAME: "a/b:1", REF_NAME: "2"}, None, "a/b:1"),
        ({IMAGE_NAME: "a/b:1"}, "other", "a/b:1"),  # used as it is, not filtered
        ({IMAGE_NAME: "", REF_NAME: "2"}, "a/b", "a/b:2"),  # empty is absent
        ({REF_NAME: "1.0"}, "docker.io/library/app", "docker.io/library/app:1.0"),
        ({REF_NAME: "1.0"}, None, None),
        ({REF_NAME: "docker.io/library/app:1.1"}, None, "docker.io/library/app:1.1"),
        (
            {REF_NAME: "docker.io/library/app:1.1"},
            "docker.io/library/app",
            "docker.io/library/app:1.1",
        ),
        (
            {REF_NAME: "docker.io/library/app:1.1"},
            "docker.io/library",
            "docker.io/library/app:1.1",
        ),
        ({REF_NAME: "docker.io/library/app:1.1"}, "docker.io/lib", None),
        ({REF_NAME: "docker.io/library/app:1.1"}, "quay.io/app", None),
        (
            {REF_NAME: "docker.io/library/nginx:latest"},
            "nginx",
            "docker.io/library/nginx:latest",
        ),
        ({REF_NAME: "app@sha256:" + "a" * 64}, "app", "app@sha256:" + "a" * 64),
        ({REF_NAME: ""}, "app", None),
        ({"org.example.other": "x"}, "app", None),
        ({}, "app", None),
    ],
)
def test_entries_are_named_as_containerds_import_names_them(
    annotations: dict[str, str], base: str | None, name: str | None
) -> None:
    assert image_name(annotations, base) == name


def test_importing_the_same_layout_again_writes_nothing(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    first = store.import_layout(layout, base_name="app")
    rows = log_rows()
    again = store.import_layout(layout, base_name="app")
    assert log_rows() == rows
    assert again.registered == []
    assert again.unchanged == first.registered
    assert again.skipped == 1


def test_import_moves_a_name_to_its_new_descriptor_and_keeps_its_labels(
    store: ImageStore, tmp_path: Path
) -> None:
    store.register("app:1.0", descriptor(1), {"team": "web"})
    store.register("app:old", descriptor(2))
    root = tmp_path / "layout"
    raw = entry(root, 1, annotations={REF_NAME: "1.0"})
    result = store.import_layout(make_layout(root, [raw]), base_name="app")
    image = store.get("app:1.0")
    assert result.registered == [image]
    assert (image.target.to_oci(), image.labels, image.version) == (
        raw,
        {"team": "web"},
        2,
    )
    assert store.get("app:old").version == 1


def test_import_appends_one_event_per_named_entry_after_the_log_it_found(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    store.register("before", descriptor(9))
    layout, _ = rich_layout(tmp_path / "layout")
    store.import_layout(layout, base_name="app", actor="ci")
    positions = [row[0] for row in log_rows()]
    assert positions == [1, 2, 3, 4, 5]
    assert [h.actor for h in store.history("app:1.0")] == ["ci"]


def test_an_entry_whose_name_breaks_the_name_rules_is_refused(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    root = tmp_path / "layout"
    good = entry(root, 1, annotations={REF_NAME: "1.0"})
    bad = entry(root, 2, annotations={IMAGE_NAME: "Bad Name"})
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(make_layout(root, [good, bad]), base_name="app")
    assert str(raised.value) == (
        "invalid index.json manifests[1] name: 'Bad Name' contains ' '; "
        "names are printable ASCII"
    )
    assert log_rows() == []


def test_two_entries_giving_one_name_count_once_or_are_refused_when_they_differ(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    root = tmp_path / "layout"
    one = entry(root, 1, annotations={REF_NAME: "1.0"})
    two = entry(root, 2, annotations={IMAGE_NAME: "app:1.0"})
    result = store.import_layout(make_layout(root, [one, one]), base_name="app")
    assert [i.name for i in result.registered] == ["app:1.0"]
    rows = log_rows()
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(make_layout(root, [one, two]), base_name="app")
    assert str(raised.value) == (
        "invalid index.json manifests[1]: names 'app:1.0', as manifests[0] does, "
        "with another descriptor"
    )
    assert log_rows() == rows


@pytest.mark.parametrize(
    ("base", "rule"),
    [
        (
            "app:1.0",
            "'app:1.0' has a tag or digest; give a repository name, like docker.io/library/app",
        ),
        (
            "App",
            "path component 'App' must be lowercase letters and digits, joined by '.', '_', '__' or '-'",
        ),
        (7, "must be a string, not int"),
    ],
)
def test_a_bad_base_name_is_refused_before_the_layout_is_read(
    store: ImageStore, tmp_path: Path, base: Any, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(tmp_path / "absent", base_name=base)
    assert str(raised.value) == f"invalid base_name: {rule}"


def test_a_layout_made_by_umoci_imports_with_its_tags_joined_to_the_base_name(
    store: ImageStore,
) -> None:
    layout = FIXTURES / "umoci-layout"
    result = store.import_layout(layout, base_name="docker.io/library/app")
    assert [(i.name, i.target.digest) for i in result.registered] == [
        ("docker.io/library/app:1.0", UMOCI_1_0),
        ("docker.io/library/app:1.1", UMOCI_1_1),
        ("docker.io/library/app:latest", UMOCI_1_0),
    ]
    written = json.loads((layout / "index.json").read_bytes())["manifests"]
    assert [i.target.to_oci() for i in result.registered] == written
    assert result.registered[1].target.to_oci() == {
        "mediaType": MANIFEST,
        "digest": UMOCI_1_1,
        "size": 249,
        "annotations": {REF_NAME: "1.1"},
    }


def test_an_oci_archive_made_by_skopeo_imports_its_full_reference_as_it_is(
    store: ImageStore,
) -> None:
    archive = FIXTURES / "skopeo-app-1.1.tar"
    result = store.import_layout(archive)
    assert [i.name for i in result.registered] == ["docker.io/library/app:1.1"]
    assert stored(store, "docker.io/library/app:1.1") == {
        "mediaType": MANIFEST,
        "digest": UMOCI_1_1,
        "size": 249,
        "annotations": {REF_NAME: "docker.io/library/app:1.1"},
    }
    outside = store.import_layout(archive, base_name="quay.io/app")
    assert (outside.registered, outside.unchanged, outside.skipped) == ([], [], 1)


def test_a_label_set_between_the_imports_read_and_its_write_is_not_lost(
    store: ImageStore, tmp_path: Path, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.register("app:1.0", descriptor(1), {"team": "web"})
    root = tmp_path / "layout"
    raw = entry(root, 1, annotations={REF_NAME: "1.0"})
    read = ImageStore.get
    raced: list[str] = []

    def read_then_another_writer(self: ImageStore, name: str, **kw: Any) -> Any:
        image = read(self, name, **kw)
        if not raced:  # the first read only: another process relabels the name
            raced.append(name)
            with ImageStore.open(location) as other:
                other.register(name, image.target, {"team": "ops"})
        return image

    monkeypatch.setattr(ImageStore, "get", read_then_another_writer)
    result = store.import_layout(make_layout(root, [raw]), base_name="app")
    assert raced == ["app:1.0"]
    [image] = result.registered
    assert (image.target.to_oci(), image.labels, image.version) == (
        raw,
        {"team": "ops"},
        3,
    )
    assert [h.labels for h in store.history("app:1.0")] == [
        {"team": "web"},
        {"team": "ops"},
        {"team": "ops"},
    ]
