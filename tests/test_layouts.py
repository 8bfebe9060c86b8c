"""OCI image layouts: import_layout and export_layout on both backends.

The layouts are real: built here with blobs whose sha256 is right, or made by
umoci and skopeo (tests/fixtures, see its README). Each import is compared
with the raw `index.json` entries it read, key for key.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conftest import INDEX, MANIFEST, Rows, descriptor
from imageledger import ImageStore
from imageledger.errors import InvalidArgument
from imageledger.layouts import image_name, reference_name

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


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("missing", "its blob blobs/sha256/{hex} is missing"),
        (
            "shorter",
            "its blob blobs/sha256/{hex} is {short} bytes, not the {size} bytes it names",
        ),
        (
            "longer",
            "its blob blobs/sha256/{hex} is more than the {size} bytes it names",
        ),
        ("other bytes", "its blob blobs/sha256/{hex} does not hash to its digest"),
        ("directory", "blobs/sha256/{hex} is not a regular file"),
    ],
)
def test_a_missing_or_wrong_blob_is_refused_and_nothing_is_written(
    store: ImageStore, tmp_path: Path, log_rows: Rows, damage: str, problem: str
) -> None:
    layout, entries = rich_layout(tmp_path / "layout")
    hex_ = entries[2]["digest"].removeprefix("sha256:")
    blob = layout / "blobs" / "sha256" / hex_
    content = blob.read_bytes()
    blob.unlink()
    if damage == "shorter":
        blob.write_bytes(content[:-1])
    elif damage == "longer":
        blob.write_bytes(content + b"\n")
    elif damage == "other bytes":
        blob.write_bytes(content.replace(b'"n": 3', b'"n": 7'))
    elif damage == "directory":
        blob.mkdir()
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(layout, base_name="app")
    rule = problem.format(hex=hex_, size=len(content), short=len(content) - 1)
    assert str(raised.value) == f"invalid index.json manifests[2]: {rule}"
    assert log_rows() == []
    assert list(store.list()) == []
    # A metadata-only import does not look at blobs at all.
    assert (
        len(store.import_layout(layout, base_name="app", check_blobs=False).registered)
        == 4
    )


def tar_of(layout: Path, archive: Path, prefix: str = "./") -> Path:
    with tarfile.open(archive, "w") as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(
                path,
                arcname=prefix + path.relative_to(layout).as_posix(),
                recursive=False,
            )
    return archive


def test_an_oci_archive_tar_imports_as_its_directory_does(
    store: ImageStore, tmp_path: Path
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    archive = tar_of(layout, tmp_path / "layout.tar")
    shutil.rmtree(layout)
    result = store.import_layout(archive, base_name="app")
    assert len(result.registered) == 4
    with tarfile.open(archive) as tar:
        assert "./index.json" in tar.getnames()
        member = tar.extractfile("./index.json")
        assert member is not None
        written = json.loads(member.read())
    registered = [stored(store, i.name) for i in result.registered]
    assert registered == written["manifests"][:4]


def test_tar_members_outside_the_archives_root_are_not_layout_files(
    store: ImageStore, tmp_path: Path
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    archive = tmp_path / "odd.tar"
    with tarfile.open(archive, "w") as tar:
        for name, path in [
            ("oci-layout", layout / "oci-layout"),
            ("../index.json", layout / "index.json"),
            ("/index.json", layout / "index.json"),
        ]:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["oci-layout", "../index.json", "/index.json"]
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(archive)
    assert str(raised.value) == (
        "invalid layout: there is no index.json file (an OCI layout needs one)"
    )


def test_a_tar_member_given_twice_is_read_as_its_last_copy(
    store: ImageStore, tmp_path: Path
) -> None:
    root = tmp_path / "layout"
    first = entry(root, 1, annotations={REF_NAME: "first"})
    last = entry(root, 2, annotations={REF_NAME: "last"})
    archive = tmp_path / "twice.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in [
            ("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
            (
                "index.json",
                json.dumps({"schemaVersion": 2, "manifests": [first]}).encode(),
            ),
            (
                "index.json",
                json.dumps({"schemaVersion": 2, "manifests": [last]}).encode(),
            ),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = store.import_layout(archive, base_name="app", check_blobs=False)
    assert [i.name for i in result.registered] == ["app:last"]


INDEX_JSON = '{"schemaVersion": 2, "manifests": []}'


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"oci-layout": None, "index.json": INDEX_JSON},
            "invalid layout: there is no oci-layout file (not an OCI image layout)",
        ),
        (
            {"oci-layout": '{"imageLayoutVersion": "2.0.0"}', "index.json": INDEX_JSON},
            "invalid layout: oci-layout has imageLayoutVersion '2.0.0'; only '1.0.0' is supported",
        ),
        (
            {"oci-layout": "{}", "index.json": INDEX_JSON},
            "invalid layout: oci-layout has imageLayoutVersion none; only '1.0.0' is supported",
        ),
        (
            {"oci-layout": "[1]", "index.json": INDEX_JSON},
            "invalid layout: oci-layout has imageLayoutVersion none; only '1.0.0' is supported",
        ),
        (
            {"oci-layout": "1.0.0"},
            "invalid layout: oci-layout is not JSON (Extra data at line 1)",
        ),
        (
            {"oci-layout": '{"imageLayoutVersion": "1.0.0"}'},
            "invalid layout: there is no index.json file (an OCI layout needs one)",
        ),
        (
            {"index.json": "{"},
            "invalid layout: index.json is not JSON (Expecting property name enclosed in double quotes at line 1)",
        ),
        ({"index.json": b"\xff"}, "invalid layout: index.json is not UTF-8 text"),
        (
            {"index.json": '{"a": 1, "a": 2}'},
            "invalid layout: index.json is not valid JSON (key 'a' appears twice)",
        ),
        (
            {"index.json": "[]"},
            "invalid layout: index.json is not an image index (a JSON list, not an object)",
        ),
        (
            {"index.json": '{"manifests": []}'},
            "invalid layout: index.json is not an image index (schemaVersion must be 2)",
        ),
        (
            {
                "index.json": '{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "manifests": []}'
            },
            "invalid layout: index.json is not an image index (mediaType is 'application/vnd.oci.image.manifest.v1+js...')",
        ),
        (
            {"index.json": '{"schemaVersion": 2}'},
            "invalid layout: index.json is not an image index (manifests must be a list)",
        ),
        (
            {"index.json": '{"schemaVersion": 2, "manifests": [7]}'},
            "invalid index.json manifests[0]: must be a descriptor object, not int",
        ),
        (
            {
                "index.json": '{"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": "sha256:abc", "size": 1}]}'
            },
            "invalid index.json manifests[0].digest: a sha256 digest must be 64 lowercase hex characters",
        ),
        (
            {
                "index.json": '{"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": "sha256:'
                + "a" * 64
                + '"}]}'
            },
            "invalid index.json manifests[0].size: is required",
        ),
        (
            {
                "index.json": '{"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": "sha256:'
                + "a" * 64
                + '", "size": 1, "extra": 1}]}'
            },
            "invalid index.json manifests[0].extra: is not a descriptor field",
        ),
        (
            {
                "index.json": '{"schemaVersion": 2, "manifests": [{"mediaType": "x/y", "digest": "blake3:'
                + "a" * 64
                + '", "size": 1}]}'
            },
            "invalid index.json manifests[0]: cannot check a blake3 blob (import without checking blobs)",
        ),
    ],
)
def test_a_bad_layout_is_refused_with_what_is_wrong_and_nothing_is_written(
    store: ImageStore,
    tmp_path: Path,
    log_rows: Rows,
    files: dict[str, Any],
    message: str,
) -> None:
    layout = tmp_path / "layout"
    layout.mkdir()
    files = {"oci-layout": '{"imageLayoutVersion": "1.0.0"}', **files}
    for name, text in files.items():
        if text is not None:
            data = text if isinstance(text, bytes) else text.encode()
            (layout / name).write_bytes(data)
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(layout, base_name="app")
    assert str(raised.value) == message
    assert log_rows() == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "invalid layout: '{p}' does not exist"),
        (
            lambda p: p.write_text("not a tar"),
            "invalid layout: '{p}' is neither a directory nor a tar archive",
        ),
        (
            lambda p: p.write_bytes(b""),
            "invalid layout: '{p}' is neither a directory nor a tar archive",
        ),
        (
            lambda p: p.symlink_to(p.parent / "nowhere"),
            "invalid layout: '{p}' is neither a directory nor a tar archive",
        ),
    ],
)
def test_a_path_that_is_no_layout_is_refused(
    store: ImageStore, tmp_path: Path, make: Any, message: str
) -> None:
    path = tmp_path / "layout"
    make(path)
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(path)
    assert str(raised.value) == message.format(p=path)


def test_an_empty_layout_imports_nothing(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    result = store.import_layout(make_layout(tmp_path / "layout", []))
    assert (result.registered, result.unchanged, result.skipped) == ([], [], 0)
    assert log_rows() == []


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        (None, "must be a non-empty path to a layout"),
        ("", "must be a non-empty path to a layout"),
    ],
)
def test_a_path_that_is_not_a_path_is_refused(
    store: ImageStore, path: Any, rule: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(path)
    assert str(raised.value) == f"invalid path: {rule}"
    with pytest.raises(InvalidArgument) as raised:
        store.export_layout(path)
    assert str(raised.value) == f"invalid path: {rule}"


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


# Export.


def test_export_writes_every_images_descriptor_with_its_names_and_no_blobs(
    store: ImageStore, tmp_path: Path
) -> None:
    rich = descriptor(
        3,
        annotations={REF_NAME: "old", "a": "b"},
        platform={"architecture": "arm64", "os": "linux"},
    )
    store.register("registry.example/app:1.0", descriptor(1))
    store.register("registry.example/app@sha256:" + "c" * 64, descriptor(2))
    store.register("localhost:5000/app", rich)
    store.register("other", descriptor(4), namespace="elsewhere")
    out = tmp_path / "out"
    assert store.export_layout(out) == 3
    assert sorted(p.name for p in out.iterdir()) == [
        "blobs",
        "index.json",
        "oci-layout",
    ]
    assert list((out / "blobs").iterdir()) == []
    assert json.loads((out / "oci-layout").read_bytes()) == {
        "imageLayoutVersion": "1.0.0"
    }
    index = json.loads((out / "index.json").read_bytes())
    assert index == {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                **rich,
                "annotations": {
                    "a": "b",
                    REF_NAME: "localhost:5000/app",
                    IMAGE_NAME: "localhost:5000/app",
                },
            },
            {
                **descriptor(1),
                "annotations": {
                    REF_NAME: "1.0",
                    IMAGE_NAME: "registry.example/app:1.0",
                },
            },
            {
                **descriptor(2),
                "annotations": {
                    REF_NAME: "registry.example/app@sha256:" + "c" * 64,
                    IMAGE_NAME: "registry.example/app@sha256:" + "c" * 64,
                },
            },
        ],
    }


@pytest.mark.parametrize(
    ("name", "ref"),
    [
        ("app", "app"),
        ("app:1.0", "1.0"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("localhost:5000/app:v2", "v2"),
        ("app:1.0@sha256:" + "a" * 64, "1.0@sha256:" + "a" * 64),
        ("app@sha256:" + "a" * 64, "app@sha256:" + "a" * 64),
    ],
)
def test_the_ref_name_of_an_exported_image_is_its_tag(name: str, ref: str) -> None:
    assert reference_name(name) == ref


def test_an_exported_layout_imports_back_to_the_same_names_without_blob_checks(
    store: ImageStore, tmp_path: Path
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    store.import_layout(layout, base_name="docker.io/library/app")
    out = tmp_path / "out"
    store.export_layout(out)
    with pytest.raises(
        InvalidArgument, match=r"manifests\[0\]: its blob .* is missing"
    ):
        store.import_layout(out, namespace="copy")
    back = store.import_layout(out, namespace="copy", check_blobs=False)
    exported = json.loads((out / "index.json").read_bytes())["manifests"]
    assert [i.target.to_oci() for i in back.registered] == exported
    assert [i.name for i in back.registered] == [i.name for i in store.list()]
    assert back.skipped == 0


def test_export_writes_into_an_empty_directory_and_refuses_anything_else(
    store: ImageStore, tmp_path: Path
) -> None:
    store.register("app:1", descriptor(1))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert store.export_layout(empty) == 1
    before = (empty / "index.json").read_bytes()
    with pytest.raises(InvalidArgument) as raised:
        store.export_layout(empty)
    assert str(raised.value) == (
        f"invalid layout: '{empty}' already exists and is not an empty directory "
        "(give a new or empty one: nothing is overwritten)"
    )
    assert (empty / "index.json").read_bytes() == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="already exists and is not an empty"):
        store.export_layout(tmp_path / "file")
    with pytest.raises(InvalidArgument) as raised:
        store.export_layout(tmp_path / "no" / "such")
    assert str(raised.value) == (
        f"invalid layout: cannot create '{tmp_path / 'no' / 'such'}': "
        "its parent directory does not exist"
    )


def test_export_of_an_empty_namespace_is_an_empty_layout(
    store: ImageStore, tmp_path: Path
) -> None:
    assert store.export_layout(tmp_path / "out", namespace="none") == 0
    index = json.loads((tmp_path / "out" / "index.json").read_bytes())
    assert index == {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}


def test_export_selects_what_list_selects_with_the_same_filters(
    store: ImageStore, tmp_path: Path
) -> None:
    store.register("app:1", descriptor(1))
    store.register("web:1", descriptor(2), {"team": "web"})
    out = tmp_path / "out"
    refused: InvalidArgument | None = None
    try:
        expected = [i.name for i in store.list("labels.team==web")]
    except InvalidArgument as e:
        refused = e
    if refused is not None:
        # list() does not take filters yet: export refuses them the same way,
        # and leaves nothing behind. Adapt once list() filters.
        with pytest.raises(InvalidArgument) as raised:
            store.export_layout(out, "labels.team==web")
        assert str(raised.value) == str(refused)
        assert not out.exists()
        return
    assert store.export_layout(out, "labels.team==web") == len(expected)
    manifests = json.loads((out / "index.json").read_bytes())["manifests"]
    assert [m["annotations"][IMAGE_NAME] for m in manifests] == expected == ["web:1"]
