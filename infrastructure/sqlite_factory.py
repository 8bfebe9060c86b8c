"""Everything one SQLite store needs, built from a file path."""

from __future__ import annotations

from pathlib import Path

from eventsourcing.sqlite import SQLiteFactory
from eventsourcing.utils import Environment

from imageledger.infrastructure import sqlite_audit, sqlite_chain
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.hash_chain import ChainWalk
from imageledger.infrastructure.live_views import rebuild_views
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_audit import SQLiteAuditIndex
from imageledger.infrastructure.sqlite_chain import CREATE_STATEMENT, add_chain
from imageledger.infrastructure.sqlite_datastore import (
    DEFAULT_LOCK_TIMEOUT,
    LedgerSQLiteDatastore,
)
from imageledger.infrastructure.sqlite_indexes import ensure_index
from imageledger.infrastructure.sqlite_recorder import LedgerSQLiteRecorder
from imageledger.infrastructure.sqlite_schema import (
    FileState,
    initialize,
    inspect_file,
    judge_in_transaction,
    read_only_query,
    set_schema_version,
    sqlite_uri,
    stored_version,
)
from imageledger.infrastructure.sqlite_views import (
    ADD_IMMUTABLE_COLUMN,
    SQLiteCurrentView,
)
from imageledger.infrastructure.store_factory import Progress
from imageledger.infrastructure.wakeups import SleepOnFile, Wakeup


class LedgerSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, built from a path instead of the environment.

    Configuration never comes from environment variables here: a variable such
    as MAPPER_TOPIC set for some other program must not change what we load.
    """

    def __init__(self, path: Path, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        state = inspect_file(path)  # raises before anything touches the file
        # A store that cannot be written is opened read-only: reads work,
        # writes fail as read-only (see read_only_query).
        query = "" if state is FileState.NEW else read_only_query(path)
        if query and state is FileState.OLDER:
            raise StoreError(
                f"cannot open {str(path)!r}: its schema needs an upgrade, and "
                "the file is read-only (open it once where it can be written)"
            )
        # Deliberately not SQLiteFactory.__init__, which reads the environment.
        super(SQLiteFactory, self).__init__(Environment("imageledger", {}))
        self.path = path
        self.read_only = bool(query)
        self.datastore = LedgerSQLiteDatastore(
            sqlite_uri(path) + query,
            lock_timeout=lock_timeout,
            read_only=self.read_only,
        )
        self.mapper_instance = LedgerMapper()
        self.recorder = LedgerSQLiteRecorder(self.datastore)
        self.current_view = SQLiteCurrentView(self.datastore, self.mapper_instance)
        self.audit_index = SQLiteAuditIndex(self.datastore, self.mapper_instance)
        self.recorder.live_views += [self.current_view, self.audit_index]
        try:
            if state is FileState.NEW:
                state = self._initialize()
            if state is FileState.OLDER:
                self._upgrade()
            if not self.read_only:  # a read-only store is read as it is
                self.current_view.catch_up()
                self.audit_index.catch_up()
                ensure_index(self.datastore, sqlite_uri(path))
        except BaseException:
            self.datastore.close()  # a store that failed to open holds nothing
            raise

    def checkpoint(self) -> tuple[int, bytes]:
        """The log's last position and its link (see sqlite_chain.checkpoint)."""
        return sqlite_chain.checkpoint(self.current_view.datastore)

    def rebuild(self, progress: Progress | None = None) -> int:
        """Refold the current view and the audit index in one pass over the log."""
        view = self.current_view
        return rebuild_views(
            lambda: self.datastore.transaction(commit=True),
            view.read_batch,
            view.head,
            [view, self.audit_index],
            progress,
        )

    def verify(self, checkpoint: tuple[int, bytes] | None) -> ChainWalk:
        """Check the chain, the checkpoint and the view (see sqlite_chain.verify)."""
        return sqlite_chain.verify(
            self.current_view.datastore,
            self.mapper_instance,
            self.current_view,
            self.audit_index,
            checkpoint,
        )

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """Stored chain links after `after` up to `until` (see sqlite_chain.links)."""
        return sqlite_chain.links(self.current_view.datastore, after, until)

    def wakeup(self) -> Wakeup:
        """SQLite cannot notify: waiting for appends is sleeping between polls
        (and checking that the file is still the one being followed)."""
        return SleepOnFile(self.path)

    def _initialize(self) -> FileState:
        statements = [
            *self.recorder.create_table_statements,
            CREATE_STATEMENT,
            "INSERT OR IGNORE INTO tracking VALUES ('__migration__', 1)",
            *self.current_view.create_statements(),
            *sqlite_audit.create_statements(),
        ]
        with self.datastore.transaction(commit=True) as c:
            return initialize(c, str(self.path), statements)

    def _upgrade(self) -> None:
        # Every step from the file's schema to ours, in one write transaction,
        # unless another process has just done it.
        with self.datastore.transaction(commit=True) as c:
            if judge_in_transaction(c, str(self.path)) is FileState.OLDER:
                version = stored_version(c)
                if version < 2:  # no hash chain: link the events already in the log
                    add_chain(c)
                if version < 3:  # no audit index (opening folds the log into
                    # it, as into any view that is behind), no immutable names
                    for statement in sqlite_audit.create_statements():
                        c.execute(statement)
                    c.execute(ADD_IMMUTABLE_COLUMN)
                set_schema_version(c)
