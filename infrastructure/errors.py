"""Errors of the storage layer, part of the one imageledger hierarchy."""

from __future__ import annotations

from imageledger.domain.errors import Conflict, ImageLedgerError


class StoreError(ImageLedgerError):
    """The store cannot do what was asked: cannot open, busy, full, damaged, newer."""


class LogNotEmpty(Conflict):
    """The log already holds events where only an empty log will do."""

    def __init__(self) -> None:
        super().__init__(
            "the store already has events: import only into a new, empty store"
        )


class IntegrityError(ImageLedgerError):
    """Verification failed: the log or a view is not what the log proves.

    `position` is the first log position found bad and `problem` says what is
    wrong there (``"payload changed"``, ``"event missing"``, ``"order
    changed"``, ``"forged event"``, ``"link changed"``, ``"history
    rewritten"``, ``"rule broken"``, ``"view differs from the fold"``).
    """

    def __init__(self, position: int, problem: str, detail: str = "") -> None:
        message = f"log position {position}: {problem}"
        super().__init__(f"{message} ({detail})" if detail else message)
        self.position = position
        self.problem = problem
        self.detail = detail


class ContainerdError(ImageLedgerError):
    """containerd cannot be reached, or its API cannot be loaded or read."""
