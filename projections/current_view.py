"""The current view: which descriptor each image name points at now.

`fold` is the only code that turns image events into view state. The live
driver (in the write transaction), `rebuild()` and `replay()` all call it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.image import ImageName, Standing
from imageledger.domain.trusted import unvalidated


class Image(BaseModel):
    """An image name as it stands: what it points at, since when, at which version."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    namespace: str
    name: str
    target: Descriptor
    labels: dict[str, str]
    created_at: datetime
    updated_at: datetime
    version: int
    immutable: bool = False
    """Write-once: the name is bound to its target's content for ever."""


_IMAGE_FIELDS = frozenset(Image.model_fields)


@dataclass(frozen=True, slots=True)
class ListKeys:
    """The rows a filtered list reads: those whose name is one of `names` or
    whose digest is one of `digests` (each sorted, without repeats)."""

    names: tuple[str, ...]
    digests: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CurrentImage:
    """The view's state for one name: its last registration, and whether it lives.

    A deleted name keeps its row (live=False, version of the delete): that row is
    what lets a later write continue the stream without reading its history.
    """

    image: Image
    live: bool


def standing(state: CurrentImage) -> Standing:
    """Where the name of `state` stands, as the stream's rules see it."""
    image = state.image
    return Standing(
        image.version,
        state.live,
        image.target if image.immutable else None,
        image.updated_at,
    )


def fold(state: CurrentImage | None, event: ImageName.Event) -> CurrentImage:
    """The state of one name after `event`, given its state before."""
    if isinstance(event, ImageName.Registered):
        created_at = (
            state.image.created_at
            if state is not None and state.live
            else event.timestamp
        )
        image = unvalidated(
            Image,
            {
                "namespace": event.namespace,
                "name": event.name,
                "target": event.target,
                "labels": dict(event.labels),
                "created_at": created_at,
                "updated_at": event.timestamp,
                "version": event.originator_version,
                "immutable": event.immutable,
            },
            set(_IMAGE_FIELDS),  # none is ever None
        )
        return CurrentImage(image=image, live=True)
    if isinstance(event, ImageName.Deleted):
        if state is None:
            raise ValueError(
                f"{event.namespace}/{event.name} v{event.originator_version}: "
                "deleted before it was registered"
            )
        image = state.image.model_copy(
            update={"updated_at": event.timestamp, "version": event.originator_version}
        )
        return replace(state, image=image, live=False)
    raise TypeError(f"not an image event: {type(event).__name__}")


def replay(
    events: Iterable[ImageName.Event],
) -> dict[tuple[str, str], Image]:
    """Fold events in log order, in memory: the live images by (namespace, name)."""
    states: dict[tuple[str, str], CurrentImage] = {}
    for event in events:
        key = (event.namespace, event.name)
        states[key] = fold(states.get(key), event)
    return {key: state.image for key, state in states.items() if state.live}


class CurrentView(ABC):
    """Where the current view is kept: read side used by the image store."""

    @abstractmethod
    def get(self, namespace: str, name: str) -> Image | None:
        """The live image, or None when the name is absent or deleted."""

    @abstractmethod
    def list(self, namespace: str, keys: ListKeys | None = None) -> Iterator[Image]:
        """Live images of `namespace`, sorted by name, streamed; with `keys`,
        only those with one of its names or digests."""
