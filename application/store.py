"""ImageStore: the application service callers use.

It validates input, turns calls into domain commands on the Image aggregate,
appends the resulting events (with the views, in one transaction) and answers
reads from the current view or the log. It returns plain data: `Image`,
`AuditEntry`, dicts and lists, never aggregates or rows.
"""

from __future__ import annotations

import builtins
import getpass
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Self

from eventsourcing.persistence import PersistenceError

from imageledger.domain.descriptor import Descriptor
from imageledger.domain.digests import digest_problem
from imageledger.domain.errors import (
    Conflict,
    ImageLedgerError,
    ImageNotFound,
    InvalidArgument,
)
from imageledger.domain.image import ImageName
from imageledger.domain.labels import labels_to_set, validate_actor, validate_reason
from imageledger.domain.names import (
    DEFAULT_NAMESPACE,
    validate_name,
    validate_namespace,
)
from imageledger.errors import describe, storage_errors, stream_with_storage_errors
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.export_format import MAX_LINE_BYTES
from imageledger.ledger import Ledger, open_factory
from imageledger.projections.audit import AuditEntry, Bound, audit_entry
from imageledger.projections.current_view import Image, replay
from imageledger.writes import (
    MAX_ATTEMPTS,
    BatchItem,
    Expect,
    check_expect,
    pending,
    public,
    register_all,
    validate_expect,
    validate_flag,
    validate_items,
    write_with_retries,
)

# What only some calls use is imported by those calls, so that opening a store
# to register or to read loads neither the audit queries nor the transfers.
if TYPE_CHECKING:
    from imageledger import transfer
    from imageledger.infrastructure.oci_layout import LayoutLimits
    from imageledger.integrity import Checkpoint, VerifyReport
    from imageledger.time_travel import Diff, Interval, PastStore, When


class ImageStore:
    """An image store on one event log. Open it with `ImageStore.open(path)`."""

    def __init__(self, log: Ledger) -> None:
        self._log = log
        self._os_user = _os_user()

    @classmethod
    def open(
        cls,
        location: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float | None = None,
    ) -> ImageStore:
        """Open (or create) the store at `location`: an SQLite file path, or a
        PostgreSQL URL (`postgresql://user:password@host:port/dbname`, optionally
        with `?schema=NAME`; needs `pip install 'imageledger[postgres]'`).

        `location` defaults to $IMAGELEDGER_DB, else ./imageledger.db.
        `lock_timeout` (seconds, up to a day, that a write waits for another
        process's write lock) defaults to $IMAGELEDGER_LOCK_TIMEOUT, else 5.
        Raises StoreError if the file or schema is not an imageledger store, was
        written by a newer version, or cannot be created or reached; nothing is
        changed in that case.
        """
        return cls(Ledger(open_factory(location, lock_timeout)))

    def close(self) -> None:
        """Close the store's connections."""
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Commands.

    def register(
        self,
        name: str,
        target: Descriptor | Mapping[str, Any],
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str | None = None,
        reason: str | None = None,
        expect: Expect = None,
        immutable: bool = False,
    ) -> Image:
        """Point `name` at `target` (an upsert, like containerd's image Update/Create).

        Writes nothing when the name already points at this target with these
        labels. A label whose value is "" is not set, as containerd removes a
        label set to the empty string. `expect="absent"` requires the name not
        to exist (containerd's Create); an int requires the name's current
        version to equal it. A failed condition raises Conflict and writes
        nothing. Returns the image as this call left it.

        `immutable=True` makes the name write-once: from then on, and after a
        delete too, it may be registered only at the same content (media type,
        digest and size; labels and the descriptor's other fields may change).
        Any other target raises ImmutableImage (a Conflict) and writes nothing.
        It cannot be undone.
        """
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        descriptor = Descriptor.from_oci(target)
        checked_labels = labels_to_set(labels)
        actor = self._actor(actor)
        reason = validate_reason(reason)
        expect = validate_expect(expect, allow_absent=True)
        immutable = validate_flag(immutable, "immutable")

        def decide(image: ImageName | None) -> ImageName | None:
            check_expect(image, expect, namespace, name)
            if image is None:
                return ImageName.register_new(
                    namespace=namespace,
                    name=name,
                    target=descriptor,
                    labels=checked_labels,
                    actor=actor,
                    reason=reason,
                    immutable=immutable,
                )
            image.register(
                descriptor,
                checked_labels,
                actor=actor,
                reason=reason,
                immutable=immutable,
            )
            return image

        image = self._write(namespace, name, decide)
        assert image is not None
        return public(image)

    def register_many(
        self,
        items: Iterable[BatchItem],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str | None = None,
        reason: str | None = None,
    ) -> builtins.list[Image]:
        """Register many names in one transaction: all of them, or none.

        Each item is a mapping with `name`, `target` and optionally `labels`,
        `expect` and `immutable`, or a tuple (name, target) or (name, target,
        labels), and means what the same `register` call means; items apply in
        order, so a name given twice ends as its last item says. Every item is
        validated before anything is read; an invalid item or a failed
        condition raises and writes nothing. Returns the image as each item
        left it.
        """
        namespace = validate_namespace(namespace)
        checked = validate_items(items)
        actor = self._actor(actor)
        reason = validate_reason(reason)
        with storage_errors():
            return write_with_retries(
                lambda: register_all(
                    self._log, checked, namespace=namespace, actor=actor, reason=reason
                ),
                f"a batch of {len(checked)} images",
            )

    def delete(
        self,
        name: str,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str | None = None,
        reason: str | None = None,
        if_digest: str | None = None,
        expect: int | None = None,
        force: bool = False,
    ) -> None:
        """Delete `name`. Raises ImageNotFound if it does not exist or, with
        `if_digest`, does not point at that digest (containerd's DeleteTarget).
        `expect` requires the name's current version to equal it (else Conflict).
        An immutable name raises ImmutableImage (a Conflict) unless `force`; a
        forced delete is recorded as such, and the name stays bound to its
        content (it can be registered again at that content only).
        """
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        actor = self._actor(actor)
        reason = validate_reason(reason)
        if if_digest is not None:
            problem = (
                digest_problem(if_digest)
                if isinstance(if_digest, str)
                else "must be a string"
            )
            if problem:
                raise InvalidArgument("if_digest", problem)
        expected = validate_expect(expect, allow_absent=False)
        force = validate_flag(force, "force")

        def decide(image: ImageName | None) -> ImageName | None:
            if image is None or not image.live:
                raise ImageNotFound(name, namespace)
            check_expect(image, expected, namespace, name)
            image.delete(actor=actor, reason=reason, if_digest=if_digest, force=force)
            return image

        self._write(namespace, name, decide)

    # Queries.

    def get(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> Image:
        """The image `name` points at now; raises ImageNotFound."""
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        try:  # not storage_errors(): get is the hot path (see docs/performance.md)
            image = self._log.current_view.get(namespace, name)
        except PersistenceError as e:
            raise StoreError(describe(e)) from e
        if image is None:
            raise ImageNotFound(name, namespace)
        return image

    def list(
        self, *filters: str, namespace: str = DEFAULT_NAMESPACE
    ) -> Iterator[Image]:
        """The live images of `namespace`, sorted by name, streamed.

        `filters` are containerd's (`name==app:prod`, `labels.team`,
        `target.digest~=^sha256:`, ...): an image is listed when it matches
        any of them. A malformed filter raises InvalidArgument with its position.
        """
        from imageledger.projections.image_filter import image_query

        namespace = validate_namespace(namespace)
        query = image_query(filters)
        images = self._log.current_view.list(namespace, query.keys)
        return stream_with_storage_errors(query.select(images))

    def history(
        self, name: str, *, namespace: str = DEFAULT_NAMESPACE
    ) -> builtins.list[AuditEntry]:
        """Every change to `name`, oldest first; ImageNotFound if it has none."""
        namespace = validate_namespace(namespace)
        name = validate_name(name)
        with storage_errors():
            stream = self._log.stream(namespace, name)
        if not stream:
            raise ImageNotFound(name, namespace, "it has no history")
        return [audit_entry(position, event) for position, event in stream]

    def replay(
        self,
        until: When | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[tuple[str, str], Image]:
        """Fold the raw log in memory (ignoring every view) up to `until`.

        `until` is a log position (inclusive; 0 is the empty store) or a
        timestamp (every event at or before it; naive datetimes are UTC).
        Returns the live images by (namespace, name). `progress(done, total)`
        is called every thousand events read.
        """
        from imageledger.time_travel import bound

        point = Bound() if until is None else bound("until", until)
        position, moment = point.position, point.moment
        _validate_progress(progress)
        with storage_errors():
            recorded = self._log.read(until=position)
            if progress is not None:
                recorded = _reporting(recorded, self._log.head(), position, progress)
            events = (event for _, event in recorded)
            if moment is not None:
                events = (event for event in events if event.timestamp <= moment)
            try:
                return replay(events)
            except (ValueError, TypeError) as e:  # the fold of a damaged log
                if isinstance(e, ImageLedgerError):
                    raise
                raise StoreError(f"the log cannot be folded: {e}") from e

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Refold the views (current view and audit index) from the log;
        return the number of events in the log.

        `progress(done, total)` is called after each batch.
        """
        _validate_progress(progress)
        with storage_errors():
            return self._log.rebuild_views(progress)

    # Audit and time travel.

    def log(
        self,
        *,
        since: When | None = None,
        until: When | None = None,
        after: int | None = None,
        actor: str | None = None,
        name: str | None = None,
        digest: str | None = None,
        kind: str | None = None,
        namespace: str | None = None,
        limit: int | None = None,
    ) -> Iterator[AuditEntry]:
        """Events of the whole log, by position, streamed; each argument narrows it.

        `since`/`until` are points of the log (a position, or a datetime,
        naive ones UTC), both inclusive; `after` is an exclusive position;
        `kind` is "registered" or "deleted"; `digest` matches registrations
        at that digest. `namespace=None` means every namespace.
        """
        from imageledger import time_travel

        query = time_travel.log_query(
            since=since,
            until=until,
            after=after,
            actor=actor,
            name=name,
            digest=digest,
            kind=kind,
            namespace=namespace,
            limit=limit,
        )
        return time_travel.log(self._log.audit_index, query)

    def as_of(self, when: When) -> PastStore:
        """The store as it was at `when` (a log position, or a datetime; naive
        ones are UTC): a read-only view with `get` and `list`.

        It holds the state right after every event at or before `when`, as
        `replay(until=when)` does; position 0 is the empty store.
        """
        from imageledger.time_travel import PastStore

        return PastStore(self._log.audit_index, when, self._filtered)

    def where(
        self, digest: str, *, namespace: str | None = None
    ) -> builtins.list[Interval]:
        """Every interval in which a name pointed at `digest`, now and in the
        past, by when it began (`until` is None while it still does).
        `namespace=None` means every namespace."""
        from imageledger import time_travel

        return time_travel.where(self._log.audit_index, digest, namespace)

    def namespaces(self) -> builtins.list[str]:
        """Every namespace the log has an event in, sorted (a namespace whose
        names were all deleted is still one)."""
        with storage_errors():
            return self._log.audit_index.namespaces()

    def diff(self, a: When, b: When, *, namespace: str | None = None) -> Diff:
        """Names added, removed and retargeted between points `a` and `b` of
        the log. `namespace=None` compares every namespace."""
        from imageledger import time_travel

        before, after = self.as_of(a), self.as_of(b)
        if namespace is None:
            with storage_errors():
                namespaces = self._log.audit_index.namespaces()
        else:
            namespaces = [validate_namespace(namespace)]

        def state(past: PastStore) -> Iterator[Image]:
            for each in namespaces:
                yield from past.list(namespace=each)

        return time_travel.diff(state(before), state(after))

    # Moving and following the log.

    def export_log(
        self, file: IO[Any], *, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Write the whole log to `file` (binary, or text) as JSON lines, one
        event a line with its chain link; return the number of events."""
        from imageledger import transfer

        _validate_progress(progress)
        with storage_errors():
            return transfer.export_log(self._log, file, progress)

    def import_log(
        self,
        file: IO[Any],
        *,
        progress: Callable[[int, int], None] | None = None,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> int:
        """Replay an `export_log` file into this store, which must be empty;
        return the number of events. Conflict if the store has events,
        InvalidArgument naming the first bad line; nothing is written then.

        A line longer than `max_line_bytes` (default 16 MiB, twice the largest
        legal event) is refused as it is read, without reading it whole."""
        from imageledger import transfer

        _validate_progress(progress)
        with storage_errors():
            return transfer.import_log(
                self._log, file, progress, max_line_bytes=max_line_bytes
            )

    def watch(
        self,
        after: int | None = None,
        *,
        namespace: str | None = None,
        filters: Iterable[str] = (),
        poll_interval: float | None = None,
    ) -> transfer.Watch:
        """Each event appended after this call, by any process, as it comes
        (an iterator of AuditEntry that never ends; `close()` it); with `after`,
        the events after that position first. Only `namespace`'s when given.
        `poll_interval` (seconds) defaults to 0.2 on SQLite; on PostgreSQL a
        NOTIFY wakes it and 2 s is the fallback.
        """
        from imageledger import transfer

        return transfer.Watch(
            self._log, *transfer.validate(after, namespace, filters, poll_interval)
        )

    # OCI image transfer.

    def import_layout(
        self,
        path: str | os.PathLike[str],
        *,
        namespace: str = DEFAULT_NAMESPACE,
        actor: str | None = None,
        reason: str | None = None,
        base_name: str | None = None,
        check_blobs: bool = True,
        limits: LayoutLimits | None = None,
    ) -> transfer.LayoutImport:
        """Register the named images of the OCI image layout at `path`.

        `path` is a layout directory or an `oci-archive` tar of one. Entries
        are named as containerd's import names them: `io.containerd.image.name`,
        else `org.opencontainers.image.ref.name`, where a bare tag is joined to
        `base_name` (`docker.io/library/app` + `1.0`). Unnamed entries are
        skipped and counted. Each entry's blob must be in the layout with the
        entry's size and digest, unless `check_blobs` is False (for a
        metadata-only layout such as `export_layout` writes).

        All names are registered in one transaction, keeping their labels;
        importing the same layout again writes nothing. A bad layout, a
        missing or wrong blob, or an invalid name raises InvalidArgument and
        writes nothing.

        `limits` caps what reading the layout may cost (see LayoutLimits:
        archive members, tar header sizes, bytes hashed per blob and in all);
        the defaults fit any real layout, and a hostile one is refused
        before it costs more.
        """
        from imageledger import transfer
        from imageledger.infrastructure.oci_layout import LayoutLimits, read_layout

        namespace = validate_namespace(namespace)
        base = transfer.validate_base_name(base_name)
        transfer.validate_path(path)
        if not isinstance(check_blobs, bool):
            raise InvalidArgument("check_blobs", "must be True or False")
        if limits is not None and not isinstance(limits, LayoutLimits):
            raise InvalidArgument("limits", "must be a LayoutLimits")
        descriptors = read_layout(path, check_blobs=check_blobs, limits=limits)
        named, skipped = transfer.named_entries(descriptors, base)
        known: dict[str, Image | None] | None = None
        for _ in range(MAX_ATTEMPTS):
            before = self._current_of(named, namespace)
            items: list[BatchItem] = [
                {
                    "name": name,
                    "target": target,
                    "labels": None if image is None else image.labels,
                    "expect": "absent" if image is None else image.version,
                }
                for (name, target), image in zip(named, before.values(), strict=True)
            ]
            try:
                images = self.register_many(
                    items, namespace=namespace, actor=actor, reason=reason
                )
            except Conflict:
                if before == known:
                    raise  # not a writer in between: a condition of the store's own
                known = before  # another writer moved a name since it was read
                continue
            registered: list[Image] = []
            unchanged: list[Image] = []
            for image, old in zip(images, before.values(), strict=True):
                same = old is not None and old.version == image.version
                (unchanged if same else registered).append(image)
            return transfer.LayoutImport(
                registered=registered, unchanged=unchanged, skipped=skipped
            )
        raise StoreError(
            f"gave up importing '{path}' after {MAX_ATTEMPTS} attempts: "
            "other writers kept moving its names"
        )

    def export_layout(
        self,
        path: str | os.PathLike[str],
        *filters: str,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> int:
        """Write an OCI image layout at `path` listing the images `list(*filters)`
        gives; return how many.

        Each image's descriptor goes into `index.json` with its name in the
        `io.containerd.image.name` annotation and its tag in
        `org.opencontainers.image.ref.name` (the whole name when it has no
        tag). No blobs: the layout holds metadata only, as the store does.
        `path` must not exist (its parent must) or be an empty directory;
        InvalidArgument otherwise, and nothing is written.
        """
        from imageledger import transfer
        from imageledger.infrastructure.oci_layout import write_layout

        transfer.validate_path(path)
        images = self.list(*filters, namespace=namespace)
        return write_layout(path, (transfer.entry(image) for image in images))

    # Integrity.

    def checkpoint(self) -> Checkpoint:
        """The log's last position and the hash chain's head there.

        Keep it somewhere else; `verify(checkpoint)` later proves that nothing
        up to that position was rewritten. `str()` of it is `POSITION:HEAD`.
        """
        from imageledger import integrity

        with storage_errors():
            return integrity.checkpoint(self._log)

    def verify(
        self, checkpoint: Checkpoint | tuple[int, str] | str | None = None
    ) -> VerifyReport:
        """Recompute the hash chain over the whole log and check every view.

        With `checkpoint` (`(position, head)` or `"POSITION:HEAD"`), also check
        that the log still has that head at that position. Raises IntegrityError
        naming the first bad position and what is wrong there.
        """
        from imageledger import integrity

        with storage_errors():
            return integrity.verify(self._log, checkpoint)

    # Internals.

    def _write(
        self,
        namespace: str,
        name: str,
        decide: Callable[[ImageName | None], ImageName | None],
    ) -> ImageName | None:
        def attempt() -> ImageName | None:
            decided: list[ImageName | None] = []

            def events(images: dict[str, ImageName | None]) -> list[ImageName.Event]:
                image = decide(images[name])
                decided.append(image)
                return [] if image is None else pending(image)

            self._log.write(namespace, [name], events)
            return decided[0]

        with storage_errors():
            return write_with_retries(attempt, f'image "{name}"')

    @staticmethod
    def _filtered(images: Iterable[Image], filters: tuple[str, ...]) -> Iterator[Image]:
        from imageledger.projections.image_filter import image_query

        return image_query(filters).select(images)

    def _current_of(
        self, named: builtins.list[tuple[str, Descriptor]], namespace: str
    ) -> dict[str, Image | None]:
        """Each name's image now, None for a name that does not exist."""
        current: dict[str, Image | None] = {}
        for name, _ in named:
            try:
                current[name] = self.get(name, namespace=namespace)
            except ImageNotFound:
                current[name] = None
        return current

    def _actor(self, actor: str | None) -> str:
        if actor is None:
            actor = os.environ.get("IMAGELEDGER_ACTOR") or self._os_user
        return validate_actor(actor)


def _validate_progress(progress: object) -> None:
    if progress is not None and not callable(progress):
        raise InvalidArgument("progress", "must be a function of (done, total)")


def _reporting(
    recorded: Iterator[tuple[int, ImageName.Event]],
    head: int,
    until: int | None,
    progress: Callable[[int, int], None],
) -> Iterator[tuple[int, ImageName.Event]]:
    total = head if until is None else min(head, until)
    done = 0
    for item in recorded:
        yield item
        done += 1
        if done % 1000 == 0:
            progress(done, max(total, done))
    progress(done, max(total, done))


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. in some containers
        return f"uid:{os.getuid()}"
