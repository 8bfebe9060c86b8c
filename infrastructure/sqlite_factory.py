"""Everything one SQLite store needs, built from a file path."""

from __future__ import annotations

from pathlib import Path

from eventsourcing.sqlite import SQLiteCursor, SQLiteFactory
from eventsourcing.utils import Environment

from imageledger.infrastructure import sqlite_chain
from imageledger.infrastructure.hash_chain import ChainWalk
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.sqlite_chain import CREATE_STATEMENT, add_chain
from imageledger.infrastructure.sqlite_datastore import (
    DEFAULT_LOCK_TIMEOUT,
    LedgerSQLiteDatastore,
)
from imageledger.infrastructure.sqlite_recorder import LedgerSQLiteRecorder
from imageledger.infrastructure.sqlite_schema import (
    FileState,
    initialize,
    inspect_file,
    judge_in_transaction,
    set_schema_version,
    sqlite_uri,
)
from imageledger.infrastructure.sqlite_views import SQLiteCurrentView
from imageledger.infrastructure.wakeups import Sleep, Wakeup


class LedgerSQLiteFactory(SQLiteFactory):
    """eventsourcing's SQLite factory, built from a path instead of the environment.

    Configuration never comes from environment variables here: a variable such
    as MAPPER_TOPIC set for some other program must not change what we load.
    """

    def __init__(self, path: Path, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT):
        state = inspect_file(path)  # raises before anything touches the file
        # Deliberately not SQLiteFactory.__init__, which reads the environment.
        super(SQLiteFactory, self).__init__(Environment("imageledger", {}))
        self.path = path
        self.datastore = LedgerSQLiteDatastore(
            sqlite_uri(path), lock_timeout=lock_timeout
        )
        self.mapper_instance = LedgerMapper()
        self.recorder = LedgerSQLiteRecorder(self.datastore)
        self.current_view = SQLiteCurrentView(self.datastore, self.mapper_instance)
        self.recorder.live_views.append(self.current_view)
        try:
            if state is FileState.NEW:
                state = self._initialize()
            if state is FileState.OLDER:
                self._upgrade()
            self.current_view.catch_up()
        except BaseException:
            self.datastore.close()  # a store that failed to open holds nothing
            raise

    def checkpoint(self) -> tuple[int, bytes]:
        """The log's last position and its link (see sqlite_chain.checkpoint)."""
        return sqlite_chain.checkpoint(self.current_view.datastore)

    def verify(self, checkpoint: tuple[int, bytes] | None) -> ChainWalk:
        """Check the chain, the checkpoint and the view (see sqlite_chain.verify)."""
        return sqlite_chain.verify(
            self.current_view.datastore,
            self.mapper_instance,
            self.current_view,
            checkpoint,
        )

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """Stored chain links after `after` up to `until` (see sqlite_chain.links)."""
        return sqlite_chain.links(self.current_view.datastore, after, until)

    def count_events(self, cursor: SQLiteCursor) -> int:
        """The number of events in the log, in `cursor`'s transaction."""
        return sqlite_chain.count_events(cursor)

    def wakeup(self) -> Wakeup:
        """SQLite cannot notify: waiting for appends is sleeping between polls."""
        return Sleep()

    def _initialize(self) -> FileState:
        statements = [
            *self.recorder.create_table_statements,
            CREATE_STATEMENT,
            "INSERT OR IGNORE INTO tracking VALUES ('__migration__', 1)",
            *self.current_view.create_statements(),
        ]
        with self.datastore.transaction(commit=True) as c:
            return initialize(c, str(self.path), statements)

    def _upgrade(self) -> None:
        # Schema 1 had no hash chain: link the events already in the log, in
        # one write transaction, unless another process has just done it.
        with self.datastore.transaction(commit=True) as c:
            if judge_in_transaction(c, str(self.path)) is FileState.OLDER:
                add_chain(c)
                set_schema_version(c)
