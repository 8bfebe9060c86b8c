"""Everything one PostgreSQL store needs, built from a postgresql:// URL."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import BasePostgresFactory, PostgresFactory
from eventsourcing.utils import Environment

from imageledger.infrastructure import postgres_chain
from imageledger.infrastructure.hash_chain import ChainWalk
from imageledger.infrastructure.live_views import rebuild_views
from imageledger.infrastructure.mapper import LedgerMapper
from imageledger.infrastructure.postgres_audit import PostgresAuditIndex
from imageledger.infrastructure.postgres_datastore import (
    LedgerPostgresDatastore,
    connect,
    parse_url,
)
from imageledger.infrastructure.postgres_indexes import ensure_index
from imageledger.infrastructure.postgres_listen import PostgresListener
from imageledger.infrastructure.postgres_recorder import LedgerPostgresRecorder
from imageledger.infrastructure.postgres_schema import (
    DatabaseState,
    initialize,
    inspect_database,
    upgrade,
)
from imageledger.infrastructure.postgres_views import PostgresCurrentView
from imageledger.infrastructure.storage import Progress
from imageledger.infrastructure.wakeups import Wakeup


class LedgerPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory, built from a URL instead of the environment.

    As with SQLite, configuration never comes from environment variables: a
    POSTGRES_PASSWORD set for some other program must not change what we open.
    """

    def __init__(self, url: str, *, lock_timeout: float) -> None:
        self.location = location = parse_url(url)
        # One plain connection first: a server that cannot be reached, or a
        # schema that is not a store, fails here with a clear message and
        # before anything is created.
        with connect(location) as probe, probe.cursor() as c:
            state = inspect_database(c, location)
        # Deliberately not BasePostgresFactory.__init__, which reads the environment.
        super(BasePostgresFactory, self).__init__(Environment("imageledger", {}))
        self.datastore = LedgerPostgresDatastore(location, lock_timeout=lock_timeout)
        try:
            self.mapper_instance = LedgerMapper()
            self.recorder = LedgerPostgresRecorder(self.datastore)
            self.current_view = PostgresCurrentView(
                self.datastore, self.mapper_instance
            )
            self.audit_index = PostgresAuditIndex(self.datastore, self.mapper_instance)
            self.recorder.live_views += [self.current_view, self.audit_index]
            if state is DatabaseState.NEW:
                self._initialize()
            elif state is DatabaseState.OLDER:
                self._upgrade()
            self.datastore.register_type_adapters()
            if state is not DatabaseState.NEW:
                self.current_view.catch_up()
                self.audit_index.catch_up()
                ensure_index(self.datastore)
        except BaseException:
            self.datastore.close()  # a store that failed to open holds nothing
            raise

    def checkpoint(self) -> tuple[int, bytes]:
        """The log's last position and its link (see postgres_chain.checkpoint)."""
        return postgres_chain.checkpoint(self.current_view.datastore)

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
        """Check the chain, the checkpoint and the view (see postgres_chain.verify)."""
        return postgres_chain.verify(
            self.current_view.datastore,
            self.mapper_instance,
            self.current_view,
            self.audit_index,
            checkpoint,
        )

    def links(self, after: int, until: int) -> dict[int, bytes]:
        """Stored chain links after `after` up to `until` (postgres_chain.links)."""
        return postgres_chain.links(self.current_view.datastore, after, until)

    def wakeup(self) -> Wakeup:
        """A listener on the channel every append NOTIFYs."""
        return PostgresListener(self.location, self.recorder.channel_name)

    def _initialize(self) -> None:
        statements: list[Any] = [
            *self.recorder.sql_create_statements,
            postgres_chain.create_statement(self.datastore.schema),
            *self.current_view.create_statements(),
            *self.audit_index.create_statements(),
        ]
        with self.datastore.transaction(commit=True) as c:
            initialize(c, self.location, statements)

    def _upgrade(self) -> None:
        # Every step from the store's schema to ours, in one transaction.
        steps = {
            # The audit index (created empty: opening folds the log into it,
            # as into any view that is behind) and immutable names.
            2: [
                *self.audit_index.create_statements(),
                self.current_view.add_immutable_column(),
            ],
        }
        with self.datastore.transaction(commit=True) as c:
            upgrade(c, self.location, steps)
