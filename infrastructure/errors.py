"""Errors of the storage layer, part of the one imageledger hierarchy."""

from __future__ import annotations

from imageledger.domain.errors import ImageLedgerError


class StoreError(ImageLedgerError):
    """The store cannot do what was asked: cannot open, busy, full, damaged, newer."""


class IntegrityError(ImageLedgerError):
    """Verification failed: the log or a view is not what the log proves."""
