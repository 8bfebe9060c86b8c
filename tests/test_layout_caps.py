"""What reading a hostile layout may cost: archive members, tar header sizes
and the bytes hashed are capped (LayoutLimits, --max-* flags), and a blob's
size is compared with the bytes really stored before a byte is hashed."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from test_layouts import REF_NAME, entry, make_layout

from conftest import MANIFEST, SCRIPT, Rows
from imageledger import ImageStore, LayoutLimits
from imageledger.errors import InvalidArgument

TIB4 = 4 * 1024**4
HUGE_DIGEST = "sha256:" + "e" * 64


def sparse_layout(root: Path) -> Path:
    """A layout whose one entry names a 4 TiB blob that is there, as a sparse
    file (no data stored: holes read as zeros)."""
    make_layout(
        root,
        [
            {
                "mediaType": MANIFEST,
                "digest": HUGE_DIGEST,
                "size": TIB4,
                "annotations": {REF_NAME: "1.0"},
            }
        ],
    )
    (root / "blobs" / "sha256").mkdir(parents=True)
    with (root / "blobs" / "sha256" / ("e" * 64)).open("wb") as blob:
        blob.truncate(TIB4)
    return root


def test_a_sparse_4_tib_blob_in_an_archive_is_refused_before_hashing(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    root = sparse_layout(tmp_path / "layout")
    archive = tmp_path / "sparse.tar.gz"
    subprocess.run(
        ["tar", "--sparse", "-czf", str(archive), "-C", str(root), "."], check=True
    )
    assert archive.stat().st_size < 1000
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(archive, base_name="app")
    assert str(raised.value) == (
        f"invalid index.json manifests[0]: blobs/sha256/{'e' * 64} is a sparse "
        "file, not all of its bytes are stored"
    )
    assert log_rows() == []


def test_a_4_tib_blob_in_a_directory_is_refused_by_the_blob_cap(
    store: ImageStore, tmp_path: Path, log_rows: Rows
) -> None:
    root = sparse_layout(tmp_path / "layout")
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(root, base_name="app")
    assert str(raised.value) == (
        f"invalid index.json manifests[0]: its blob blobs/sha256/{'e' * 64} is "
        f"{TIB4:,} bytes, over the cap of 67,108,864 for one blob "
        "(max_blob_bytes, --max-blob-bytes)"
    )
    assert log_rows() == []


def test_a_blob_whose_stored_size_differs_from_its_entry_is_refused_unread(
    store: ImageStore, tmp_path: Path
) -> None:
    root = tmp_path / "layout"
    first = entry(root, 1, annotations={REF_NAME: "1.0"})
    first["size"] = TIB4  # says 4 TiB; the file is a few bytes
    make_layout(root, [first])
    hex_ = first["digest"].removeprefix("sha256:")
    stored = (root / "blobs" / "sha256" / hex_).stat().st_size
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(root, base_name="app")
    assert str(raised.value) == (
        f"invalid index.json manifests[0]: its blob blobs/sha256/{hex_} is "
        f"{stored} bytes, not the {TIB4} bytes it names"
    )


def test_the_bytes_hashed_in_all_are_capped(store: ImageStore, tmp_path: Path) -> None:
    root = tmp_path / "layout"
    entries = [entry(root, n, annotations={REF_NAME: f"1.{n}"}) for n in (1, 2, 3)]
    make_layout(root, entries)
    total = sum(e["size"] for e in entries)
    limits = LayoutLimits(max_total_bytes=total - 1)
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(root, base_name="app", limits=limits)
    hex_ = entries[2]["digest"].removeprefix("sha256:")
    assert str(raised.value) == (
        f"invalid index.json manifests[2]: its blob blobs/sha256/{hex_} would take "
        f"the bytes hashed for the layout over the cap of {total - 1:,} "
        "(max_total_bytes, --max-total-bytes)"
    )
    limits = LayoutLimits(max_total_bytes=total, max_blob_bytes=max_size(entries))
    assert (
        len(store.import_layout(root, base_name="app", limits=limits).registered) == 3
    )


def max_size(entries: list[dict[str, Any]]) -> int:
    return max(e["size"] for e in entries)


def archive_of_members(path: Path, count: int) -> Path:
    with tarfile.open(path, "w") as tar:
        tar.addfile(tarfile.TarInfo("oci-layout"), io.BytesIO(b""))
        for n in range(count - 1):
            tar.addfile(tarfile.TarInfo(f"junk/{n}"), io.BytesIO(b""))
    return path


def test_an_archive_with_more_members_than_the_cap_is_refused(
    store: ImageStore, tmp_path: Path
) -> None:
    archive = archive_of_members(tmp_path / "many.tar", 101)
    with pytest.raises(InvalidArgument) as raised:
        store.import_layout(archive, limits=LayoutLimits(max_members=100))
    assert str(raised.value) == (
        f"invalid layout: '{archive}' has more than 100 members, the cap "
        "(max_members, --max-members)"
    )
    assert LayoutLimits().max_members == 100_000


def pax_header_archive(path: Path, header_bytes: int) -> Path:
    """A .tar.gz whose first member is a PAX extended header of `header_bytes`
    (compressed, a few hundred KB), then a small file."""
    record = b" comment="
    length = header_bytes
    head = str(length).encode() + record
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = length
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(header.tobuf(format=tarfile.USTAR_FORMAT))
        out.write(head)
        left = length - len(head) - 1
        chunk = b"a" * (1024 * 1024)
        while left > 0:
            out.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
        out.write(b"\n")
        out.write(b"\0" * (-length % 512))
        small = tarfile.TarInfo("oci-layout")
        out.write(small.tobuf(format=tarfile.USTAR_FORMAT))
        out.write(b"\0" * 1024)
    return path


# Run in a child whose address space is capped: an import that read the
# header whole would run out of memory there, and fail the test.
MEMORY_PROBE = """
import resource, sys
from imageledger import ImageStore
from imageledger.errors import InvalidArgument
with ImageStore.open(sys.argv[1]) as store:
    with open("/proc/self/status") as status:
        size = next(int(l.split()[1]) for l in status if l.startswith("VmSize:"))
    room = 128 * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size * 1024 + room, size * 1024 + room))
    try:
        store.import_layout(sys.argv[2])
    except InvalidArgument as e:
        print(e)
"""


def test_a_huge_pax_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    archive = pax_header_archive(tmp_path / "pax.tar.gz", 400 * 1024 * 1024)
    assert archive.stat().st_size < 4 * 1024 * 1024
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "x.db"), str(archive)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"invalid layout: '{archive}' has a tar header of 419,430,400 bytes, over "
        "the cap of 1,048,576 (max_header_bytes, --max-header-bytes)\n"
    )


def test_a_pax_header_under_the_cap_is_read(store: ImageStore, tmp_path: Path) -> None:
    archive = pax_header_archive(tmp_path / "pax.tar.gz", 4096)
    with pytest.raises(InvalidArgument, match="oci-layout is not JSON"):
        store.import_layout(archive)


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGELEDGER_")}
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_command_line_flags_lower_and_raise_the_caps(tmp_path: Path) -> None:
    db = str(tmp_path / "images.db")
    archive = archive_of_members(tmp_path / "many.tar", 11)
    done = run_script("--db", db, "import-layout", str(archive), "--max-members", "10")
    assert (done.returncode, done.stdout, done.stderr) == (
        2,
        "",
        f"Error: invalid layout: '{archive}' has more than 10 members, the cap "
        "(max_members, --max-members)\n",
    )
    done = run_script("--db", db, "import-layout", str(archive), "--max-members", "0")
    assert (done.returncode, done.stderr) == (
        2,
        "Error: invalid --max-members: must be a whole number, 1 or more\n",
    )
    root = tmp_path / "layout"
    first = entry(root, 1, annotations={REF_NAME: "1.0"})
    make_layout(root, [first])
    args = ["--db", db, "import-layout", str(root), "--base-name", "app"]
    done = run_script(*args, "--max-blob-bytes", str(first["size"] - 1))
    assert done.returncode == 2
    assert "over the cap of" in done.stderr and "--max-blob-bytes" in done.stderr
    done = run_script(*args, "--max-blob-bytes", str(first["size"]))
    assert done.returncode == 0, done.stderr
    assert (
        json.loads(run_script("--db", db, "--json", "get", "app:1.0").stdout)["target"][
            "digest"
        ]
        == first["digest"]
    )
