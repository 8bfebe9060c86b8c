"""Following a live containerd: its image store, recorded in the ledger as observed.

containerd overwrites an image record in place and its events carry only a
name, so the follower records what it observes: on each image event it asks
containerd for that name (Images.Get) and registers what it finds, or deletes
the name when containerd no longer has it. Events are lossy (a Get after two
quick changes sees only the second; a Get after a delete finds nothing), so a
reconcile (Images.List, compared with the ledger) runs at start, after every
reconnect and periodically, and closes the gaps. Nothing is invented: every
event written is a state containerd reported.

All writes go through the public ImageStore API (register, register_many,
delete), with the follower's actor and a reason naming what prompted them.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.errors import Conflict, ImageNotFound, InvalidArgument
from imageledger.domain.labels import labels_to_set
from imageledger.domain.names import validate_name, validate_namespace
from imageledger.infrastructure.containerd import (
    Api,
    Client,
    ContainerdImage,
    ImageEvent,
)
from imageledger.infrastructure.errors import ContainerdError
from imageledger.projections.current_view import Image
from imageledger.store import ImageStore

RECONCILE_REASON = "containerd reconcile"
MAX_PENDING = 10_000
"""Events waiting to be recorded before more are dropped (and a reconcile
made instead): a follower far behind a burst holds bounded memory."""
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0


@dataclass(frozen=True)
class Change:
    """One write the follower made: `kind` is "registered" or "deleted"."""

    namespace: str
    name: str
    kind: str
    digest: str | None
    reason: str
    recorded_at: float
    """time.time() once the write returned."""
    event_at: float | None = None
    """containerd's timestamp of the event that prompted it (None: reconcile)."""


@dataclass(frozen=True)
class Refusal:
    """A containerd image the ledger cannot hold (its name, namespace or target
    breaks imageledger's stricter grammar), or a write a condition refused."""

    namespace: str
    name: str
    problem: str


@dataclass
class Status:
    """What the follower has done so far."""

    address: str
    namespaces: tuple[str, ...]
    connected: bool = False
    reconciles: int = 0
    events: int = 0
    registered: int = 0
    deleted: int = 0
    reconnects: int = 0
    dropped: int = 0
    """Events dropped while MAX_PENDING were waiting; a reconcile covered them."""
    refused: dict[tuple[str, str], str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "namespaces": list(self.namespaces) or None,
            "connected": self.connected,
            "reconciles": self.reconciles,
            "events": self.events,
            "registered": self.registered,
            "deleted": self.deleted,
            "reconnects": self.reconnects,
            "dropped": self.dropped,
            "refused": len(self.refused),
            "refusedNames": [
                {"namespace": namespace, "name": name, "problem": problem}
                for (namespace, name), problem in sorted(self.refused.items())
            ],
        }


class Observer:
    """What a follower tells its caller; the default says nothing."""

    def changed(self, change: Change) -> None:
        """A write was made."""

    def refused(self, refusal: Refusal) -> None:
        """An image was refused; called once per namespace and name."""

    def status(self, status: Status, what: str) -> None:
        """`what` happened: "reconciled", "connected", "disconnected",
        "unreachable" (once per outage), "stopped"."""

    def problem(self, message: str) -> None:
        """containerd cannot be reached; the follower keeps trying."""


_STOP = object()
_BEHIND = object()


class Follower:
    """Keeps the ledger of one containerd: `run()` until `stop()`.

    `namespaces` are the containerd namespaces followed (all when empty);
    each maps to the ledger namespace of the same name. `reconcile_every`
    seconds between reconciles (None: only at start and after reconnects).
    """

    def __init__(
        self,
        store: ImageStore,
        api: Api,
        address: str,
        *,
        namespaces: Iterable[str] = (),
        actor: str,
        reconcile_every: float | None = None,
        observer: Observer | None = None,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._store = store
        self._api = api
        self._namespaces = tuple(dict.fromkeys(namespaces))
        self._actor = actor
        self._every = reconcile_every
        self._observer = observer or Observer()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._max_pending = max_pending
        self._behind = threading.Event()  # events dropped, no reconcile since
        self._stopping = False
        self._session = 0
        self._connected_before = False
        self.status = Status(address=address, namespaces=self._namespaces)

    def stop(self) -> None:
        """Ask `run` to return. Safe from a signal handler and another thread."""
        self._stopping = True
        self._inbox.put(_STOP)  # SimpleQueue.put is reentrant

    def run(self) -> Status:
        """Follow until `stop()`: reconnect with backoff whenever containerd
        goes away, and reconcile on every (re)connect."""
        delay = BACKOFF_FIRST
        reported = False
        while not self._stopping:
            try:
                self._follow_once()
            except ContainerdError as e:
                if self.status.connected:
                    self.status.connected = False
                    self._observer.status(self.status, "disconnected")
                    delay = BACKOFF_FIRST
                    reported = False
                if not reported:  # once per outage, not once per retry
                    self._observer.problem(f"{e}; retrying")
                    self._observer.status(self.status, "unreachable")
                    reported = True
            if self._stopping or self._wait(delay):
                break
            delay = min(delay * 2, BACKOFF_MAX)
        self.status.connected = False
        self._observer.status(self.status, "stopped")
        return self.status

    def reconcile(self, client: Client) -> None:
        """Make the ledger hold what containerd holds now, in every followed
        namespace: one register_many for what differs, a delete for each name
        the ledger has live and containerd does not."""
        namespaces = self._namespaces or tuple(client.namespaces())
        for namespace in namespaces:
            self._reconcile_namespace(client, namespace)
        self.status.reconciles += 1
        self._observer.status(self.status, "reconciled")

    # One connection.

    def _follow_once(self) -> None:
        client = Client(self.status.address, self._api)
        self._session += 1
        session = self._session
        subscription = None
        reader = None
        try:
            # Subscribe first, then list: a change between the two is seen twice
            # (harmless, writes are idempotent) rather than not at all.
            subscription = client.subscribe(self._namespaces)
            reader = threading.Thread(
                target=self._read, args=(session, subscription), daemon=True
            )
            reader.start()
            self.reconcile(client)
            if not self.status.connected:
                if self._connected_before:
                    self.status.reconnects += 1
                self._connected_before = self.status.connected = True
                self._observer.status(self.status, "connected")
            self._handle_events(client, session)
        finally:
            if subscription is not None:
                subscription.cancel()
            if reader is not None:
                reader.join(timeout=5)
            client.close()

    def _read(self, session: int, subscription: Any) -> None:
        try:
            for event in subscription:
                if self._inbox.qsize() < self._max_pending:
                    self._inbox.put((session, event))
                    continue
                self.status.dropped += 1
                if not self._behind.is_set():
                    self._behind.set()
                    self._inbox.put((session, _BEHIND))
        except ContainerdError as e:
            self._inbox.put((session, e))
            return
        self._inbox.put((session, ContainerdError("the event stream ended")))

    def _handle_events(self, client: Client, session: int) -> None:
        due = self._next_reconcile()
        while not self._stopping:
            timeout = None if due is None else max(0.0, due - time.monotonic())
            try:
                item = self._inbox.get(timeout=timeout)
            except queue.Empty:
                self.reconcile(client)
                due = self._next_reconcile()
                continue
            if item is _STOP:
                return
            owner, payload = item
            if owner != session:
                continue  # left over from a connection already closed
            if isinstance(payload, ContainerdError):
                raise payload
            if payload is _BEHIND:
                # Every event before the marker is recorded; those dropped
                # after it are covered by a reconcile from now on.
                self._behind.clear()
                self.reconcile(client)
                continue
            self._record_event(client, payload)

    def _next_reconcile(self) -> float | None:
        return None if not self._every else time.monotonic() + self._every

    def _wait(self, seconds: float) -> bool:
        """Sleep `seconds` unless stopped first; True when stopped."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._inbox.get(timeout=left)
            except queue.Empty:
                break
            if item is _STOP:
                return True
        return self._stopping

    # Recording.

    def _record_event(self, client: Client, event: ImageEvent) -> None:
        if self._namespaces and event.namespace not in self._namespaces:
            return
        self.status.events += 1
        reason = f"containerd {event.topic}"
        observed = client.image(event.namespace, event.name)
        if observed is None:
            self._delete(event.namespace, event.name, reason, event.timestamp)
        else:
            self._register(event.namespace, observed, reason, event.timestamp)

    def _register(
        self,
        namespace: str,
        observed: ContainerdImage,
        reason: str,
        event_at: float | None,
    ) -> None:
        try:
            name, target, labels = self._checked(namespace, observed)
            current = self._current(namespace, name)
            if current is not None and _same(current, target, labels):
                return
            self._store.register(
                name,
                target,
                labels,
                namespace=namespace,
                actor=self._actor,
                reason=reason,
            )
        except (InvalidArgument, Conflict) as e:
            self._refuse(namespace, observed.name, str(e))
            return
        self._changed(namespace, name, "registered", target.digest, reason, event_at)

    def _delete(
        self, namespace: str, name: str, reason: str, event_at: float | None
    ) -> None:
        try:
            self._store.delete(
                name, namespace=namespace, actor=self._actor, reason=reason
            )
        except ImageNotFound:
            return  # the ledger has nothing live there either
        except (InvalidArgument, Conflict) as e:
            self._refuse(namespace, name, str(e))
            return
        self._changed(namespace, name, "deleted", None, reason, event_at)

    def _reconcile_namespace(self, client: Client, namespace: str) -> None:
        try:
            validate_namespace(namespace)
        except InvalidArgument as e:
            self._refuse(namespace, "*", str(e))
            return
        observed = client.images(namespace)
        live = {image.name: image for image in self._store.list(namespace=namespace)}
        items: list[tuple[str, Descriptor, dict[str, str]]] = []
        for image in observed:
            try:
                name, target, labels = self._checked(namespace, image)
            except InvalidArgument as e:
                self._refuse(namespace, image.name, str(e))
                continue
            current = live.get(name)
            if current is None or not _same(current, target, labels):
                items.append((name, target, labels))
        self._register_all(namespace, items)
        present = {image.name for image in observed}
        for name in sorted(set(live) - present):
            self._delete(namespace, name, RECONCILE_REASON, None)

    def _register_all(
        self, namespace: str, items: list[tuple[str, Descriptor, dict[str, str]]]
    ) -> None:
        if not items:
            return
        try:
            self._store.register_many(
                items, namespace=namespace, actor=self._actor, reason=RECONCILE_REASON
            )
        except Conflict:
            # One name the ledger holds as write-once moved in containerd: record
            # the others one by one, and report that one.
            for name, target, labels in items:
                observed = ContainerdImage(name, target.to_oci(), labels)
                self._register(namespace, observed, RECONCILE_REASON, None)
            return
        for name, target, _ in items:
            self._changed(
                namespace, name, "registered", target.digest, RECONCILE_REASON, None
            )

    def _checked(
        self, namespace: str, image: ContainerdImage
    ) -> tuple[str, Descriptor, dict[str, str]]:
        validate_namespace(namespace)
        name = validate_name(image.name)
        return name, Descriptor.from_oci(image.target), labels_to_set(image.labels)

    def _current(self, namespace: str, name: str) -> Image | None:
        try:
            return self._store.get(name, namespace=namespace)
        except ImageNotFound:
            return None

    def _changed(
        self,
        namespace: str,
        name: str,
        kind: str,
        digest: str | None,
        reason: str,
        event_at: float | None,
    ) -> None:
        if kind == "registered":
            self.status.registered += 1
        else:
            self.status.deleted += 1
        change = Change(
            namespace, name, kind, digest, reason, time.time(), event_at=event_at
        )
        self._observer.changed(change)

    def _refuse(self, namespace: str, name: str, problem: str) -> None:
        key = (namespace, name)
        if key in self.status.refused:
            return
        self.status.refused[key] = problem
        self._observer.refused(Refusal(namespace, name, problem))


def _same(current: Image, target: Descriptor, labels: dict[str, str]) -> bool:
    """Whether the ledger's image already says what containerd reports: the
    target (media type, digest, size, annotations) and the labels. The times
    are not compared: the ledger stamps its own."""
    return current.target == target and current.labels == labels
