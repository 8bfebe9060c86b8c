"""OCI image layouts in and out: `import_layout` and `export_layout` of ImageStore.

Import names the entries of a layout's `index.json` as containerd's import
does (`client/import.go`, `images/archive/reference.go`):

- `io.containerd.image.name`, when present, is the name, as it is;
- else `org.opencontainers.image.ref.name`: a bare tag (`1.0`) is joined to
  the base name (`docker.io/library/app:1.0`); a full reference (one with a
  `/`, `:` or `@`) is used as it is, except that with a base name it must be
  under it, as with `ctr images import --base-name`;
- anything else has no name and is skipped (and counted). Without a base
  name a bare tag has none: containerd would invent `import-<today>:<tag>`,
  a name that depends on the day of the import.

Each named entry is registered with its descriptor exactly as written, all in
one batch (one transaction). Like containerd's import, which updates only an
image's target, it keeps the labels a name already has; the batch is
conditional on the versions read, so a label set in between is never lost.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from imageledger.batch import BatchItem
from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import Conflict, ImageNotFound, InvalidArgument
from imageledger.domain.names import (
    DEFAULT_NAMESPACE,
    validate_name,
    validate_namespace,
)
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.oci_layout import (
    LayoutLimits,
    read_layout,
    write_layout,
)
from imageledger.projections.current_view import Image
from imageledger.writes import MAX_ATTEMPTS

IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


class LayoutImport(BaseModel):
    """What `import_layout` did.

    `registered`: the names it pointed at their entry's descriptor (one event
    each); `unchanged`: the names that already pointed there (nothing written),
    both in `index.json` order, as the import left them. `skipped`: the
    entries that have no name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    registered: list[Image]
    unchanged: list[Image]
    skipped: int


class _Store(Protocol):
    def get(self, name: str, *, namespace: str = ...) -> Image: ...

    def list(self, *filters: str, namespace: str = ...) -> Iterator[Image]: ...

    def register_many(
        self,
        items: Iterable[BatchItem],
        *,
        namespace: str = ...,
        actor: str | None = ...,
        reason: str | None = ...,
    ) -> builtins.list[Image]: ...


class LayoutMethods:
    """ImageStore's import and export of OCI image layouts."""

    def import_layout(
        self: _Store,
        path: str | os.PathLike[str],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str | None = None,
        reason: str | None = None,
        base_name: str | None = None,
        check_blobs: bool = True,
        limits: LayoutLimits | None = None,
    ) -> LayoutImport:
        """Register the named images of the OCI image layout at `path`.

        `path` is a layout directory or an `oci-archive` tar of one. Entries
        are named as containerd's import names them: `io.containerd.image.name`,
        else `org.opencontainers.image.ref.name`, where a bare tag is joined to
        `base_name` (`docker.io/library/app` + `1.0`). Unnamed entries are
        skipped and counted. Each entry's blob must be in the layout with the
        entry's size and digest, unless `check_blobs` is False (for a
        metadata-only layout such as `export_layout` writes).

        All names are registered in one transaction, keeping their labels;
        importing the same layout again writes nothing. A bad layout, a
        missing or wrong blob, or an invalid name raises InvalidArgument and
        writes nothing.

        `limits` caps what reading the layout may cost (see LayoutLimits:
        archive members, tar header sizes, bytes hashed per blob and in all);
        the defaults fit any real layout, and a hostile one is refused
        before it costs more.
        """
        namespace = validate_namespace(namespace)
        base = _validate_base_name(base_name)
        _validate_path(path)
        if not isinstance(check_blobs, bool):
            raise InvalidArgument("check_blobs", "must be True or False")
        if limits is not None and not isinstance(limits, LayoutLimits):
            raise InvalidArgument("limits", "must be a LayoutLimits")
        descriptors = read_layout(path, check_blobs=check_blobs, limits=limits)
        named, skipped = _named_entries(descriptors, base)
        known: dict[str, Image | None] | None = None
        for _ in range(MAX_ATTEMPTS):
            before = _current(self, named, namespace)
            items: list[BatchItem] = [
                {
                    "name": name,
                    "target": target,
                    "labels": None if image is None else image.labels,
                    "expect": "absent" if image is None else image.version,
                }
                for (name, target), image in zip(named, before.values(), strict=True)
            ]
            try:
                images = self.register_many(
                    items, namespace=namespace, actor=actor, reason=reason
                )
            except Conflict:
                if before == known:
                    raise  # not a writer in between: a condition of the store's own
                known = before  # another writer moved a name since it was read
                continue
            registered: list[Image] = []
            unchanged: list[Image] = []
            for image, old in zip(images, before.values(), strict=True):
                same = old is not None and old.version == image.version
                (unchanged if same else registered).append(image)
            return LayoutImport(
                registered=registered, unchanged=unchanged, skipped=skipped
            )
        raise StoreError(
            f"gave up importing '{path}' after {MAX_ATTEMPTS} attempts: "
            "other writers kept moving its names"
        )

    def export_layout(
        self: _Store,
        path: str | os.PathLike[str],
        *filters: str,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> int:
        """Write an OCI image layout at `path` listing the images `list(*filters)`
        gives; return how many.

        Each image's descriptor goes into `index.json` with its name in the
        `io.containerd.image.name` annotation and its tag in
        `org.opencontainers.image.ref.name` (the whole name when it has no
        tag). No blobs: the layout holds metadata only, as the store does.
        `path` must not exist (its parent must) or be an empty directory;
        InvalidArgument otherwise, and nothing is written.
        """
        _validate_path(path)
        images = self.list(*filters, namespace=namespace)
        return write_layout(path, (_entry(image) for image in images))


def _validate_path(path: object) -> None:
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise InvalidArgument("path", "must be a non-empty path to a layout")


def _validate_base_name(base_name: object) -> str | None:
    if base_name is None:
        return None
    try:
        validate_name(base_name)
    except InvalidArgument as e:
        raise InvalidArgument("base_name", e.rule) from None
    assert isinstance(base_name, str)
    remainder = base_name.partition("@")[0]
    if remainder != base_name or remainder.rfind(":") > remainder.rfind("/"):
        raise InvalidArgument(
            "base_name",
            f"{base_name!r} has a tag or digest; give a repository name, "
            "like docker.io/library/app",
        )
    return base_name


def _named_entries(
    descriptors: list[Descriptor], base: str | None
) -> tuple[list[tuple[str, Descriptor]], int]:
    """(name, descriptor) of each named entry in order, and the number skipped.

    A name given twice with the same descriptor counts once; with another
    descriptor the layout is ambiguous, and InvalidArgument says so.
    """
    named: dict[str, tuple[int, Descriptor]] = {}
    skipped = 0
    for position, descriptor in enumerate(descriptors):
        where = f"index.json manifests[{position}]"
        name = image_name(descriptor.annotations or {}, base)
        if name is None:
            skipped += 1
            continue
        try:
            validate_name(name)
        except InvalidArgument as e:
            raise InvalidArgument(f"{where} name", e.rule) from None
        first = named.setdefault(name, (position, descriptor))
        if first[1] != descriptor:
            raise InvalidArgument(
                where,
                f"names {name!r}, as manifests[{first[0]}] does, "
                "with another descriptor",
            )
    return [(name, descriptor) for name, (_, descriptor) in named.items()], skipped


def image_name(annotations: Mapping[str, str], base: str | None) -> str | None:
    """The name containerd's import gives an entry with `annotations`, or None."""
    name = annotations.get(IMAGE_NAME)
    if name:
        return name
    ref = annotations.get(REF_NAME)
    if not ref:
        return None
    if not any(c in ref for c in "/:@"):
        return None if base is None else f"{base}:{ref}"
    if base is None or _under(ref, base):
        return ref
    # ctr's `--base-name nginx` also keeps docker.io/library/nginx:latest.
    last = ref.rsplit("/", 1)[-1]
    if last.startswith(base) and (len(last) == len(base) or last[len(base)] in ":@"):
        return ref
    return None


def _under(ref: str, base: str) -> bool:
    return ref.startswith(base) and (len(ref) == len(base) or ref[len(base)] in "/:@")


def _current(
    store: _Store, named: list[tuple[str, Descriptor]], namespace: str
) -> dict[str, Image | None]:
    current: dict[str, Image | None] = {}
    for name, _ in named:
        try:
            current[name] = store.get(name, namespace=namespace)
        except ImageNotFound:
            current[name] = None
    return current


def _entry(image: Image) -> dict[str, Any]:
    entry = image.target.to_oci()
    entry["annotations"] = {
        **entry.get("annotations", {}),
        REF_NAME: reference_name(image.name),
        IMAGE_NAME: image.name,
    }
    return entry


def reference_name(name: str) -> str:
    """The `org.opencontainers.image.ref.name` of `name`: its tag (and digest, if
    it has both), as containerd's export writes it; the whole name without a tag."""
    remainder = name.partition("@")[0]
    colon = remainder.rfind(":")
    return name[colon + 1 :] if colon > remainder.rfind("/") else name
