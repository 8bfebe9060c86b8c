"""imageledger: an event-sourced metadata store for container images.

Example::

    >>> from imageledger import ImageStore
    >>> with ImageStore.open("imageledger.db") as store:
    ...     store.register("docker.io/library/alpine:3.20", {
    ...         "mediaType": "application/vnd.oci.image.index.v1+json",
    ...         "digest": "sha256:" + "a" * 64, "size": 9218})
    ...     store.get("docker.io/library/alpine:3.20").target.digest

The public names are imported on first use, so that `imageledger --help` and
`imageledger --version` start without loading pydantic and eventsourcing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imageledger.domain.descriptor import Descriptor, Platform
    from imageledger.infrastructure.oci_layout import LayoutLimits
    from imageledger.integrity import Checkpoint, VerifyReport
    from imageledger.projections.audit import AuditEntry
    from imageledger.projections.current_view import Image
    from imageledger.store import ImageStore
    from imageledger.transfer import LayoutImport

__version__ = "0.1.0"

__all__ = [
    "AuditEntry",
    "Checkpoint",
    "Descriptor",
    "Image",
    "ImageStore",
    "LayoutImport",
    "LayoutLimits",
    "Platform",
    "VerifyReport",
    "__version__",
]

_HOMES = {
    "AuditEntry": "imageledger.projections.audit",
    "Descriptor": "imageledger.domain.descriptor",
    "Image": "imageledger.projections.current_view",
    "ImageStore": "imageledger.store",
    "LayoutImport": "imageledger.transfer",
    "LayoutLimits": "imageledger.infrastructure.oci_layout",
    "Platform": "imageledger.domain.descriptor",
    "Checkpoint": "imageledger.integrity",
    "VerifyReport": "imageledger.integrity",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'imageledger' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
