"""containerd's API as the follower loads it: compiled from containerd's own
protos with grpc_tools.protoc, cached under the hash of the files, checked
against the pinned field numbers, and never read or written through a link.
(The client against a real containerd is tested in test_follow.py.)"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imageledger.errors import ContainerdError

containerd = pytest.importorskip(
    "imageledger.infrastructure.containerd", reason="the containerd extra"
)
pytest.importorskip("grpc_tools", reason="the containerd extra")

DEBIAN = Path(containerd.DEFAULT_PROTOS)
FILES = (*containerd.SERVICE_PROTOS, *containerd._IMPORTED_PROTOS)


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    """A protos root of our own: a copy of the files the follower compiles."""
    if not all((DEBIAN / f).is_file() for f in FILES):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"containerd's protos are not under {DEBIAN}")
        pytest.skip(f"containerd's protos are not under {DEBIAN}")
    root = tmp_path / "protos"
    for relative in FILES:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DEBIAN / relative, root / relative)
    return root


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "imageledger"


def cached(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_the_api_is_compiled_once_and_cached_under_the_hash_of_the_protos(
    protos: Path, cache: Path
) -> None:
    api = containerd.load_api(protos)
    key = containerd.protos_key(protos)
    assert cached(cache) == [f"containerd-api-{key}.pb"]
    image = api["containerd.services.images.v1.Image"](name="app:1")
    assert image.SerializeToString() == b"\n\x05app:1"  # field 1, length 5

    # Loaded again from the cache: the same classes' wire format, no new file.
    again = containerd.load_api(protos)
    assert again["containerd.services.images.v1.Image"].FromString(
        b"\n\x05app:1"
    ).name == ("app:1")
    assert cached(cache) == [f"containerd-api-{key}.pb"]

    # Another set of protos, another key: the first entry stays valid.
    with (protos / containerd.SERVICE_PROTOS[0]).open("a") as file:
        file.write("\n// a comment changes the key\n")
    containerd.load_api(protos)
    assert len(cached(cache)) == 2


def test_protos_with_other_field_numbers_are_refused(protos: Path, cache: Path) -> None:
    images = protos / containerd.SERVICE_PROTOS[0]
    text = images.read_text()
    assert "containerd.types.Descriptor target = 3" in text
    images.write_text(
        text.replace(
            "containerd.types.Descriptor target = 3",
            "containerd.types.Descriptor target = 4",
        )
    )
    with pytest.raises(ContainerdError) as raised:
        containerd.load_api(protos)
    assert str(raised.value) == (
        "the protos are not containerd API 1.6: "
        "containerd.services.images.v1.Image.target is not field 3"
    )
    assert cached(cache) == []


def test_a_protos_root_without_the_files_says_what_to_install(
    tmp_path: Path, cache: Path
) -> None:
    with pytest.raises(ContainerdError) as raised:
        containerd.load_api(tmp_path / "empty")
    message = str(raised.value)
    assert message.startswith(
        f"containerd's API protos are not under '{tmp_path / 'empty'}': cannot read "
        "'github.com/containerd/containerd/api/services/images/v1/images.proto'"
    )
    assert "golang-github-containerd-containerd-dev" in message
    assert "IMAGELEDGER_CONTAINERD_PROTOS" in message


def test_the_protos_root_comes_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(containerd.PROTOS_ENV, raising=False)
    assert containerd.protos_root() == DEBIAN
    monkeypatch.setenv(containerd.PROTOS_ENV, "/somewhere")
    assert containerd.protos_root() == Path("/somewhere")
    assert containerd.protos_root("/given") == Path("/given")


def test_a_damaged_cache_entry_is_compiled_again_and_replaced(
    protos: Path, cache: Path
) -> None:
    containerd.load_api(protos)
    [name] = cached(cache)
    (cache / name).write_bytes(b"\xff not a descriptor set")
    api = containerd.load_api(protos)
    assert api["containerd.services.images.v1.GetImageRequest"](name="x").name == "x"
    assert (cache / name).read_bytes() != b"\xff not a descriptor set"


def test_the_cache_is_never_read_or_written_through_a_symbolic_link(
    protos: Path, cache: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    cache.mkdir(parents=True)
    entry = cache / f"containerd-api-{containerd.protos_key(protos)}.pb"
    entry.symlink_to(victim)

    containerd.load_api(protos)

    assert victim.read_bytes() == b"precious"
    assert not entry.is_symlink()  # replaced by the compiled set itself
    assert entry.stat().st_size > 0
