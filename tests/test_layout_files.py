"""Reading OCI image layouts: missing and wrong blobs, tars (odd member names,
members given twice), and every way a layout can be malformed. Each refusal
is an InvalidArgument that says what is wrong, and nothing is written."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from test_layouts import REF_NAME, entry, make_layout, rich_layout, stored

from conftest import Rows
from imageledger import ImageStore
from imageledger.errors import InvalidArgument


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


def tar_of(layout: Path, archive: Path, prefix: str = "./", mode: str = "w") -> Path:
    with tarfile.open(archive, mode) as tar:
        for path in sorted(layout.rglob("*")):
            tar.add(
                path,
                arcname=prefix + path.relative_to(layout).as_posix(),
                recursive=False,
            )
    return archive


@pytest.mark.parametrize(("prefix", "mode"), [("./", "w"), ("", "w"), ("./", "w:gz")])
def test_an_oci_archive_tar_imports_as_its_directory_does(
    store: ImageStore, tmp_path: Path, prefix: str, mode: str
) -> None:
    layout, _ = rich_layout(tmp_path / "layout")
    archive = tar_of(layout, tmp_path / "layout.tar", prefix, mode)
    shutil.rmtree(layout)
    result = store.import_layout(archive, base_name="app")
    assert len(result.registered) == 4
    with tarfile.open(archive) as tar:
        assert f"{prefix}index.json" in tar.getnames()
        member = tar.extractfile(f"{prefix}index.json")
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
                + '", "size": 1, "extra": [1e999]}]}'
            },
            "invalid index.json manifests[0]: unknown field 'extra' holds a number that is not finite",
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


@pytest.mark.parametrize(
    ("linked", "target", "refused"),
    [
        (
            "blob",
            "/etc/hostname",
            "invalid index.json manifests[0]: blobs/sha256/{hex}",
        ),
        (
            "blob",
            "/no/such/file",
            "invalid index.json manifests[0]: blobs/sha256/{hex}",
        ),
        (
            "blob",
            "../../../outside",
            "invalid index.json manifests[0]: blobs/sha256/{hex}",
        ),
        ("index.json", "../outside", "invalid layout: index.json"),
        ("oci-layout", "/etc/hostname", "invalid layout: oci-layout"),
    ],
)
def test_a_symlink_out_of_the_layout_is_refused_naming_the_file(
    store: ImageStore,
    tmp_path: Path,
    log_rows: Rows,
    linked: str,
    target: str,
    refused: str,
) -> None:
    root = tmp_path / "layout"
    first = entry(root, 1, annotations={REF_NAME: "1.0"})
    make_layout(root, [first])
    hex_ = first["digest"].removeprefix("sha256:")
    path = {
        "blob": root / "blobs" / "sha256" / hex_,
        "index.json": root / "index.json",
        "oci-layout": root / "oci-layout",
    }[linked]
    # What the link leads to is exactly what the file should hold.
    (tmp_path / "outside").write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(root, base_name="app")
    assert str(raised.value) == (
        refused.format(hex=hex_) + " is a symbolic link to a file outside the layout"
    )
    assert log_rows() == []


def test_a_symlink_inside_the_layout_is_read(store: ImageStore, tmp_path: Path) -> None:
    root = tmp_path / "layout"
    first = entry(root, 1, annotations={REF_NAME: "1.0"})
    make_layout(root, [first])
    (root / "index.json").rename(root / "real-index.json")
    (root / "index.json").symlink_to("real-index.json")
    assert len(store.import_layout(root, base_name="app").registered) == 1


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_a_link_member_of_an_archive_is_refused_naming_it(
    store: ImageStore, tmp_path: Path, kind: bytes
) -> None:
    root = tmp_path / "layout"
    first = entry(root, 1, annotations={REF_NAME: "1.0"})
    make_layout(root, [first])
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root / "oci-layout", arcname="oci-layout")
        link = tarfile.TarInfo("index.json")
        link.type = kind
        link.linkname = "/etc/hostname" if kind == tarfile.SYMTYPE else "oci-layout"
        tar.addfile(link)
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(archive, base_name="app")
    assert str(raised.value) == "invalid layout: index.json is not a regular file"
