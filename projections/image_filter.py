"""containerd's image filters on the current view's `Image` (and on events).

The fields are those of containerd's image adaptor (core/metadata/adaptors.go):
`name`, `target.digest`, `target.mediatype`, `labels.<key>` and
`annotations.<key>` (the target descriptor's annotations). A key is the rest of
the path joined with dots, so `labels.com.example.key` and
`labels."com.example.key"` name the same label. Any other path is absent.

An `ImageQuery` also says which rows a view needs to read at all: when every
alternative requires `name==X` or `target.digest==Y`, only the images with
those names or digests can match, and the view looks just those up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.filters import Filter, Lookup, Operator, Selector, parse
from imageledger.domain.image import ImageName
from imageledger.projections.current_view import Image, ListKeys


@dataclass(frozen=True, slots=True)
class ImageQuery:
    """Parsed filters: which images match, and which rows can."""

    filter: Filter
    keys: ListKeys | None
    """None when any image may match; else the only rows worth reading."""

    def matches(self, image: Image) -> bool:
        """Whether `image` passes the filters."""
        return self.filter.matches(image_fields(image))

    def select(self, images: Iterable[Image]) -> Iterator[Image]:
        """The images that pass the filters, in the order given, lazily."""
        if self.filter.matches_all:
            return iter(images)
        return (image for image in images if self.matches(image))


def image_query(filters: Sequence[str]) -> ImageQuery:
    """Parse containerd-style filter strings (any of them may match).

    Raises InvalidArgument (InvalidFilter) with the position of a bad filter.
    """
    parsed = parse(*filters)
    return ImageQuery(parsed, _keys(parsed))


def image_fields(image: Image) -> Lookup:
    """The field lookup containerd's image adaptor gives a filter."""
    return _fields(image.name, image.target, image.labels)


def event_fields(event: ImageName.Event) -> Lookup:
    """The same lookup for an event (`watch`): a registration has the fields
    of the image it leaves; a delete has only its name."""
    if isinstance(event, ImageName.Registered):
        return _fields(event.name, event.target, event.labels)
    return _fields(event.name, None, None)


def _fields(
    name: str, target: Descriptor | None, labels: Mapping[str, str] | None
) -> Lookup:
    def field(path: tuple[str, ...]) -> str | None:
        if not path:
            return None
        if path[0] == "name":  # containerd ignores the rest of the path
            return name or None
        if path[0] == "target" and len(path) >= 2 and target is not None:
            if path[1] == "digest":
                return target.digest or None
            if path[1] == "mediatype":
                return target.media_type or None
            return None
        if path[0] == "labels":
            return _key(path[1:], labels)
        if path[0] == "annotations" and target is not None:
            return _key(path[1:], target.annotations)
        return None

    return field


def _key(path: tuple[str, ...], values: Mapping[str, str] | None) -> str | None:
    # containerd's checkMap: the key is the rest of the path joined with dots.
    if not values:
        return None
    return values.get(".".join(path))


def _keys(parsed: Filter) -> ListKeys | None:
    names: set[str] = set()
    digests: set[str] = set()
    for selectors in parsed.alternatives:
        name = next((s.value for s in selectors if _is_name(s)), None)
        if name is not None:
            names.add(name)
            continue
        digest = next((s.value for s in selectors if _is_digest(s)), None)
        if digest is None:
            return None  # this alternative can match any row
        digests.add(digest)
    return ListKeys(_storable(names), _storable(digests))


def _is_name(selector: Selector) -> bool:
    return selector.operator is Operator.EQUAL and selector.path[0] == "name"


def _is_digest(selector: Selector) -> bool:
    return selector.operator is Operator.EQUAL and selector.path[:2] == (
        "target",
        "digest",
    )


def _storable(values: set[str]) -> tuple[str, ...]:
    return tuple(sorted(value for value in values if _text(value)))


def _text(value: str) -> bool:
    # A value with NUL or a lone surrogate (escaped bytes that are not UTF-8)
    # equals no stored name or digest, and neither database takes it as text.
    if "\x00" in value:
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True
