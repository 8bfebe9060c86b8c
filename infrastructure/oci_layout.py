"""OCI image layouts on disk: reading one, and writing a metadata-only one.

A layout is a directory (or an `oci-archive`: the same files in a tar) with
`oci-layout` (`{"imageLayoutVersion": "1.0.0"}`), `index.json` (an image index
whose `manifests` list the layout's images) and `blobs/<alg>/<encoded>`.

Reading validates every `index.json` entry as a descriptor and, unless told
not to, checks that each entry's blob is there with the entry's size and
digest. A tar is read in place, never extracted: its member names are only
compared with the few paths a layout has, so `../x` or `/etc/x` in an archive
can reach nothing. Every problem is an InvalidArgument that says what is
wrong with the layout; reading writes nothing anywhere.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import posixpath
import stat
import tarfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import InvalidArgument, shown

LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
LAYOUT_VERSION = "1.0.0"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
# containerd's limit for the JSON files of an imported archive.
MAX_JSON_BYTES = 20 * 1024 * 1024

_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_CHUNK = 1024 * 1024
_MIB = 1024 * 1024


@dataclass(frozen=True)
class LayoutLimits:
    """What reading one layout may cost at most; past a cap, InvalidArgument.

    - `max_members`: members of an oci-archive (each is kept in memory while
      the archive is read). A layout holds a few files per image.
    - `max_header_bytes`: one tar extended header (PAX, or a GNU long name),
      refused before it is read: Python's tarfile reads one whole.
    - `max_blob_bytes`: the size an index.json entry may give its blob, the
      bytes hashed for it. Entries are manifests and indexes, kilobytes each.
    - `max_total_bytes`: the bytes hashed for all the entries' blobs together.
    """

    max_members: int = 100_000
    max_header_bytes: int = _MIB
    max_blob_bytes: int = 64 * _MIB
    max_total_bytes: int = 1024 * _MIB

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(item.name, "must be a whole number, 1 or more")


class _Source(ABC):
    """The files of a layout, wherever they are kept."""

    @abstractmethod
    def open(self, name: str) -> IO[bytes] | None:
        """The regular file at `name` (a path inside the layout), or None if absent.

        Raises InvalidArgument when `name` exists but is not a regular file.
        """

    @abstractmethod
    def stored_size(self, name: str, file: IO[bytes]) -> int:
        """How many bytes reading `file` (opened from `name`) gives, known
        before reading it; InvalidArgument when they are not all stored
        (a sparse archive member, whose holes would read as zeros)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the source holds open."""


class _Directory(_Source):
    """A layout directory. A file of it may be a symbolic link, but only to a
    file inside the layout: a link that resolves outside (`blobs/sha256/<hash
    of /etc/hostname>` -> `/etc/hostname`) would read a file that is not the
    layout's and tell whoever wrote the layout whether it has a given hash."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._real_root = os.path.realpath(root)

    def close(self) -> None:
        pass  # every file is closed by its reader

    def open(self, name: str) -> IO[bytes] | None:
        path = self._root / name
        try:
            # Where it leads is judged before whether it is there, so a link
            # out cannot tell whether the file it names exists either.
            real = os.path.realpath(path)
            if os.path.commonpath([self._real_root, real]) != self._real_root:
                raise InvalidArgument(
                    "layout",
                    f"{name} is a symbolic link to a file outside the layout",
                )
            # stat first: opening a FIFO would wait for a writer.
            if not stat.S_ISREG(os.stat(real).st_mode):
                raise InvalidArgument("layout", f"{name} is not a regular file")
            # The resolved path, never following a link again: a link swapped
            # in after the check cannot lead the read elsewhere.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            return os.fdopen(fd, "rb")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise InvalidArgument("layout", f"cannot read {name}: {e.strerror}") from e

    def stored_size(self, name: str, file: IO[bytes]) -> int:
        return os.fstat(file.fileno()).st_size


class _CappedTarInfo(tarfile.TarInfo):
    """A tar header that refuses an extended header (PAX, GNU long name) over
    `max_header_bytes` before tarfile reads it whole into memory."""

    max_header_bytes = LayoutLimits.max_header_bytes
    archive = ""

    def _proc_member(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED_HEADERS and self.size > self.max_header_bytes:
            raise InvalidArgument(
                "layout",
                f"'{self.archive}' has a tar header of {self.size:,} bytes, over "
                f"the cap of {self.max_header_bytes:,} (max_header_bytes, "
                "--max-header-bytes)",
            )
        return super()._proc_member(tarfile)  # type: ignore[misc, no-any-return]


_EXTENDED_HEADERS = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _Archive(_Source):
    def __init__(self, path: Path, limits: LayoutLimits) -> None:
        capped = type(
            "_Capped",
            (_CappedTarInfo,),
            {"max_header_bytes": limits.max_header_bytes, "archive": str(path)},
        )
        try:
            self._tar = tarfile.open(path, "r:*", tarinfo=capped)  # noqa: SIM115 (closed by close())
        except tarfile.ReadError:
            raise InvalidArgument(
                "layout", f"'{path}' is neither a directory nor a tar archive"
            ) from None
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidArgument(
                "layout", f"'{path}' is not a readable tar archive ({e})"
            ) from e
        try:
            # A name given twice is the later member, as extracting would leave it.
            self._members: dict[str, tarfile.TarInfo] = {}
            for count, member in enumerate(self._tar, start=1):
                if count > limits.max_members:
                    raise InvalidArgument(
                        "layout",
                        f"'{path}' has more than {limits.max_members:,} members, "
                        "the cap (max_members, --max-members)",
                    )
                if (cleaned := _clean(member.name)) is not None:
                    self._members[cleaned] = member
        except (tarfile.TarError, EOFError, OSError) as e:
            self._tar.close()
            raise InvalidArgument(
                "layout", f"'{path}' is not a readable tar archive ({e})"
            ) from e
        except BaseException:
            self._tar.close()
            raise

    def open(self, name: str) -> IO[bytes] | None:
        member = self._members.get(name)
        if member is None:
            return None
        if not member.isreg():
            raise InvalidArgument("layout", f"{name} is not a regular file")
        try:
            return self._tar.extractfile(member)
        except (tarfile.TarError, OSError) as e:
            raise InvalidArgument("layout", f"cannot read {name}: {e}") from e

    def stored_size(self, name: str, file: IO[bytes]) -> int:
        member = self._members[name]
        if member.sparse is not None:  # a GNU sparse member: holes read as zeros
            raise InvalidArgument(
                "layout", f"{name} is a sparse file, not all of its bytes are stored"
            )
        return member.size

    def close(self) -> None:
        self._tar.close()


def _clean(name: str) -> str | None:
    """A member's path as a layout path (`./index.json` is `index.json`), or None
    for names outside the archive's root, which no layout file can have."""
    cleaned = posixpath.normpath(name)
    if cleaned.startswith("/") or cleaned == ".." or cleaned.startswith("../"):
        return None
    return cleaned


@contextmanager
def _opened(
    location: str | os.PathLike[str], limits: LayoutLimits
) -> Iterator[_Source]:
    path = Path(location)
    if path.is_dir():
        source: _Source = _Directory(path)
    elif path.is_file():
        source = _Archive(path, limits)
    elif path.exists() or path.is_symlink():
        raise InvalidArgument(
            "layout", f"'{path}' is neither a directory nor a tar archive"
        )
    else:
        raise InvalidArgument("layout", f"'{path}' does not exist")
    try:
        yield source
    finally:
        source.close()


def read_layout(
    location: str | os.PathLike[str],
    *,
    check_blobs: bool = True,
    limits: LayoutLimits | None = None,
) -> list[Descriptor]:
    """The descriptors of `index.json`'s `manifests`, in order, exactly as written.

    `location` is a layout directory or a tar of one. With `check_blobs`,
    each entry's blob must be in `blobs/` with the entry's size and digest.
    Reading stays within `limits` (LayoutLimits' defaults if None).
    Raises InvalidArgument naming the first problem.
    """
    limits = LayoutLimits() if limits is None else limits
    with _opened(location, limits) as source:
        layout = _read_json(source, LAYOUT_FILE, "not an OCI image layout")
        version = layout.get("imageLayoutVersion") if type(layout) is dict else None
        if version != LAYOUT_VERSION:
            found = "none" if version is None else shown(version)
            raise InvalidArgument(
                "layout",
                f"{LAYOUT_FILE} has imageLayoutVersion {found}; "
                f"only '{LAYOUT_VERSION}' is supported",
            )
        entries = _manifests(_read_json(source, INDEX_FILE, "an OCI layout needs one"))
        descriptors = [
            Descriptor.from_oci(entry, field=f"{INDEX_FILE} manifests[{i}]")
            for i, entry in enumerate(entries)
        ]
        if check_blobs:
            budget = limits.max_total_bytes
            for i, descriptor in enumerate(descriptors):
                where = f"{INDEX_FILE} manifests[{i}]"
                budget -= _check_blob(source, descriptor, where, limits, budget)
        return descriptors


def _read_json(source: _Source, name: str, missing_hint: str) -> Any:
    file = source.open(name)
    if file is None:
        raise InvalidArgument("layout", f"there is no {name} file ({missing_hint})")
    with file:
        raw = file.read(MAX_JSON_BYTES + 1)
    if len(raw) > MAX_JSON_BYTES:
        raise InvalidArgument("layout", f"{name} is over {MAX_JSON_BYTES} bytes")
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise InvalidArgument("layout", f"{name} is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise InvalidArgument(
            "layout", f"{name} is not JSON ({e.msg} at line {e.lineno})"
        ) from None
    except (RecursionError, ValueError) as e:
        raise InvalidArgument("layout", f"{name} is not valid JSON ({e})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"key {shown(key)} appears twice")
        data[key] = value
    return data


def _manifests(index: object) -> list[Any]:
    """The `manifests` of an image index, or InvalidArgument saying why it is none."""

    def not_an_index(why: str) -> InvalidArgument:
        return InvalidArgument("layout", f"{INDEX_FILE} is not an image index ({why})")

    if type(index) is not dict:
        raise not_an_index(f"a JSON {type(index).__name__}, not an object")
    if index.get("schemaVersion") != 2:
        raise not_an_index("schemaVersion must be 2")
    media_type = index.get("mediaType", INDEX_MEDIA_TYPE)
    if media_type != INDEX_MEDIA_TYPE:
        raise not_an_index(f"mediaType is {shown(media_type)}")
    manifests = index.get("manifests")
    if type(manifests) is not list:
        raise not_an_index("manifests must be a list")
    return manifests


def _check_blob(
    source: _Source,
    descriptor: Descriptor,
    where: str,
    limits: LayoutLimits,
    budget: int,
) -> int:
    """Check the blob of one entry; return the bytes hashed.

    Its size is compared with the descriptor's before a byte is hashed, and
    so are the caps: a 4 TiB sparse file, or an entry that says 4 TiB, costs
    nothing to refuse.
    """
    algorithm, _, encoded = descriptor.digest.partition(":")
    # The digest grammar allows no '/' and no leading '.', so this stays in blobs/.
    name = f"blobs/{algorithm}/{encoded}"
    hasher = _HASHES.get(algorithm)
    if hasher is None:
        raise InvalidArgument(
            where, f"cannot check a {algorithm} blob (import without checking blobs)"
        )
    try:
        file = source.open(name)
    except InvalidArgument as e:
        raise InvalidArgument(where, e.rule) from None
    if file is None:
        raise InvalidArgument(where, f"its blob {name} is missing")
    with file:
        try:
            stored = source.stored_size(name, file)
        except InvalidArgument as e:
            raise InvalidArgument(where, e.rule) from None
        if stored != descriptor.size:
            raise _wrong_size(where, name, stored, descriptor.size)
        if descriptor.size > limits.max_blob_bytes:
            raise InvalidArgument(
                where,
                f"its blob {name} is {descriptor.size:,} bytes, over the cap of "
                f"{limits.max_blob_bytes:,} for one blob (max_blob_bytes, "
                "--max-blob-bytes)",
            )
        if descriptor.size > budget:
            raise InvalidArgument(
                where,
                f"its blob {name} would take the bytes hashed for the layout "
                f"over the cap of {limits.max_total_bytes:,} (max_total_bytes, "
                "--max-total-bytes)",
            )
        digest, size = hasher(), 0
        while chunk := file.read(_CHUNK):
            size += len(chunk)
            if size > descriptor.size:
                break
            digest.update(chunk)
    if size != descriptor.size:  # the file changed size since it was opened
        raise _wrong_size(where, name, size, descriptor.size)
    if digest.hexdigest() != encoded:
        raise InvalidArgument(where, f"its blob {name} does not hash to its digest")
    return size


def _wrong_size(where: str, name: str, size: int, named: int) -> InvalidArgument:
    more = "more than" if size > named else f"{size} bytes, not"
    return InvalidArgument(
        where, f"its blob {name} is {more} the {named} bytes it names"
    )


# Every file of an export is created through the layout directory's descriptor,
# new (O_EXCL) and never through a symbolic link (O_NOFOLLOW): a link planted
# in the directory while the export runs makes the export fail, instead of
# making it write whatever the link points at.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def write_layout(location: str | os.PathLike[str], entries: Iterable[Any]) -> int:
    """Write a layout of `entries` (descriptors as OCI JSON) at `location`; no blobs.

    `location` must be absent (its parent must exist) or an empty directory,
    and not a symbolic link: nothing that is there is ever overwritten, and
    nothing outside it is written. Each file is created new, through the
    directory's descriptor, never following a link (see CREATE_FLAGS); a file
    that appears in the directory meanwhile makes the export fail.
    `index.json` is written last, through a temporary file linked into place
    (a link, unlike a rename, never replaces a file). On any error what this
    call created is removed. Returns the number of entries written.
    """
    path = Path(location)
    directory, created = _claim(path)
    made: dict[str, tuple[int, int]] = {}  # name -> (device, inode) we created
    try:
        with exclusive_file(directory, LAYOUT_FILE, made, path) as out:
            out.write(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode())
        _make_directory(directory, "blobs", made, path)  # the spec asks for it
        partial = f".{INDEX_FILE}.partial"
        count = 0
        with exclusive_file(directory, partial, made, path) as out:
            out.write(f'{{"schemaVersion":2,"mediaType":"{INDEX_MEDIA_TYPE}",'.encode())
            out.write(b'"manifests":[')
            for count, entry in enumerate(entries, start=1):
                out.write(b"," if count > 1 else b"")
                text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
                out.write(text.encode())
            out.write(b"]}")
            out.flush()
            os.fsync(out.fileno())
        _publish(directory, partial, INDEX_FILE, made, path)
        os.fsync(directory)
    except BaseException:
        _undo(directory, made)
        os.close(directory)
        if created:
            with suppress(OSError):
                path.rmdir()
        raise
    os.close(directory)
    return count


@contextmanager
def exclusive_file(
    directory: int, name: str, made: dict[str, tuple[int, int]], where: Path
) -> Iterator[IO[bytes]]:
    """A new file `name` in `directory` (a descriptor), open for writing.

    Created with CREATE_FLAGS: if anything is at `name` already, a file or a
    symbolic link, InvalidArgument, and nothing is written to it.
    """
    try:
        fd = os.open(name, CREATE_FLAGS, 0o644, dir_fd=directory)
    except OSError as e:
        raise _changed(where, name, e) from e
    stat_result = os.fstat(fd)
    made[name] = (stat_result.st_dev, stat_result.st_ino)
    with os.fdopen(fd, "wb") as out:
        yield out


def _make_directory(
    directory: int, name: str, made: dict[str, tuple[int, int]], where: Path
) -> None:
    try:
        os.mkdir(name, 0o755, dir_fd=directory)
        stat_result = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except OSError as e:
        raise _changed(where, name, e) from e
    made[name] = (stat_result.st_dev, stat_result.st_ino)


def _publish(
    directory: int,
    source: str,
    target: str,
    made: dict[str, tuple[int, int]],
    where: Path,
) -> None:
    try:
        os.link(
            source,
            target,
            src_dir_fd=directory,
            dst_dir_fd=directory,
            follow_symlinks=False,
        )
    except OSError as e:
        raise _changed(where, target, e) from e
    made[target] = made[source]
    _remove(directory, source, made)


def _changed(where: Path, name: str, error: OSError) -> InvalidArgument:
    if error.errno in (errno.EEXIST, errno.ELOOP):
        return InvalidArgument(
            "layout",
            f"'{where / name}' appeared while exporting (another process is "
            "writing in the directory): nothing was overwritten",
        )
    return InvalidArgument("layout", f"cannot write '{where / name}': {error.strerror}")


def _claim(path: Path) -> tuple[int, bool]:
    """An open descriptor of `path`, made or found an empty directory of ours,
    and whether this call created it."""
    created = False
    try:
        path.mkdir()
        created = True
    except FileExistsError:
        pass
    except FileNotFoundError:
        raise InvalidArgument(
            "layout", f"cannot create '{path}': its parent directory does not exist"
        ) from None
    except OSError as e:
        raise InvalidArgument("layout", f"cannot create '{path}': {e.strerror}") from e
    try:
        directory = os.open(path, _DIRECTORY_FLAGS)
    except OSError as e:
        if path.is_symlink():
            raise InvalidArgument(
                "layout",
                f"'{path}' is a symbolic link (give the directory itself: "
                "an export never writes through a link)",
            ) from None
        if e.errno == errno.ENOTDIR:
            raise _not_empty(path) from None
        raise InvalidArgument("layout", f"cannot open '{path}': {e.strerror}") from e
    try:
        if os.listdir(directory):
            raise _not_empty(path)
    except BaseException:
        os.close(directory)
        raise
    return directory, created


def _not_empty(path: Path) -> InvalidArgument:
    return InvalidArgument(
        "layout",
        f"'{path}' already exists and is not an empty directory "
        "(give a new or empty one: nothing is overwritten)",
    )


def _undo(directory: int, made: dict[str, tuple[int, int]]) -> None:
    """Remove what this export created, and only that: a file another process
    put in its place (another inode) stays."""
    for name in list(made):
        _remove(directory, name, made)


def _remove(directory: int, name: str, made: dict[str, tuple[int, int]]) -> None:
    identity = made.pop(name, None)
    with suppress(OSError):
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
        if (found.st_dev, found.st_ino) != identity:
            return
        if stat.S_ISDIR(found.st_mode):
            os.rmdir(name, dir_fd=directory)
        else:
            os.unlink(name, dir_fd=directory)
