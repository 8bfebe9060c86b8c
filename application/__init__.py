"""imageledger: an event-sourced metadata store for container images.

Example::

    >>> from imageledger import ImageStore
    >>> with ImageStore.open("imageledger.db") as store:
    ...     store.register("docker.io/library/alpine:3.20", {
    ...         "mediaType": "application/vnd.oci.image.index.v1+json",
    ...         "digest": "sha256:" + "a" * 64, "size": 9218})
    ...     store.get("docker.io/library/alpine:3.20").target.digest
"""

from imageledger.domain.descriptor import Descriptor, Platform
from imageledger.integrity import Checkpoint, VerifyReport
from imageledger.projections.audit import AuditEntry
from imageledger.projections.current_view import Image
from imageledger.store import ImageStore

__version__ = "0.1.0"

__all__ = [
    "AuditEntry",
    "Checkpoint",
    "Descriptor",
    "Image",
    "ImageStore",
    "Platform",
    "VerifyReport",
    "__version__",
]
