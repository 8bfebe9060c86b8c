"""Every error imageledger raises, in one hierarchy under ImageLedgerError.

- ImageLedgerError
  - InvalidArgument: bad name, namespace, descriptor, label, condition, point in time
  - ImageNotFound: the name does not exist (or not at the digest asked for)
  - Conflict: a conditional write found another state than expected
    - ImmutableImage: a write would move, or delete without force, an immutable name
  - StoreError: cannot open, busy past the timeout, disk full, damaged, newer schema
  - IntegrityError: verification failed
"""

from imageledger.domain.errors import (
    Conflict,
    ImageLedgerError,
    ImageNotFound,
    ImmutableImage,
    InvalidArgument,
)
from imageledger.infrastructure.errors import IntegrityError, StoreError

__all__ = [
    "Conflict",
    "ImageLedgerError",
    "ImageNotFound",
    "ImmutableImage",
    "IntegrityError",
    "InvalidArgument",
    "StoreError",
]
