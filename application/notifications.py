"""A Distribution registry's notifications, recorded in the store.

The registry (`registry:2`, Debian's `docker-registry`) POSTs envelopes
(`application/vnd.docker.distribution.events.v1+json`) of events:

- a manifest `push` with a tag registers `HOST/REPOSITORY:TAG` at the pushed
  descriptor (mediaType, digest, size), keeping the name's labels;
- a manifest `delete` (by digest) deletes every `HOST/REPOSITORY:TAG` that
  points at that digest; a tag `delete` deletes that tag;
- blob events, pulls, mounts and pushes by digest alone are ignored (counted).

Delivery is at least once: the registry resends an envelope that was not
answered 2xx, for ever, and holds back the later ones. Each event's id is
recorded in the reason of what it wrote (`distribution event ID: ...`), and an
event whose id is already in the name's history is not recorded again. The
history is read through the store's public API and the write is conditional
on the version read, so two processes recording the same resent event (on one
PostgreSQL store) record it once: the loser's write is a Conflict, it reads
again and finds the id. An event that can never apply (a bad name, an unknown
action, a name already gone, an immutable name) is answered 2xx and listed,
so that it does not block the registry; a store that is busy or down fails the
whole envelope (503) and the resend records only what was not recorded yet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from imageledger.domain.digests import digest_problem
from imageledger.errors import (
    Conflict,
    ImageNotFound,
    ImmutableImage,
    IntegrityError,
    InvalidArgument,
    StoreError,
)

if TYPE_CHECKING:
    from imageledger.projections.audit import AuditEntry
    from imageledger.store import ImageStore

MAX_EVENTS = 10_000
"""The most events one envelope may hold (the body's byte cap comes first)."""

_EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_MAX_TEXT = 256  # a user agent or request id, as shown in the reason
# A resent event that keeps losing the race to other writers of its name.
_ATTEMPTS = 20

Outcome = Literal["recorded", "unchanged", "duplicate", "ignored"]


@dataclass
class Report:
    """What an envelope came to: counts of each outcome, and the events that
    could not apply, each with why (as an error of the HTTP service)."""

    recorded: int = 0
    unchanged: int = 0
    duplicates: int = 0
    ignored: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> None:
        if outcome == "recorded":
            self.recorded += 1
        elif outcome == "unchanged":
            self.unchanged += 1
        elif outcome == "duplicate":
            self.duplicates += 1
        else:
            self.ignored += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "ignored": self.ignored,
            "rejected": self.rejected,
        }


def events_of(envelope: object) -> list[Any]:
    """The events of an envelope; InvalidArgument if it is not one."""
    if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
        raise InvalidArgument("body", 'must be an envelope: {"events": [...]}')
    events: list[Any] = envelope["events"]
    if len(events) > MAX_EVENTS:
        raise InvalidArgument(
            "events", f"{len(events)} events, at most {MAX_EVENTS} in one envelope"
        )
    return events


def record_envelope(
    store: ImageStore,
    events: list[Any],
    *,
    namespace: str,
    registry: str | None,
    actor: str,
) -> Report:
    """Record each event of an envelope in order, as the module says.

    Raises StoreError (the store is busy or down) and IntegrityError, which
    fail the whole envelope: the registry resends it, and what was recorded
    already is then counted as a duplicate.
    """
    report = Report()
    for index, event in enumerate(events):
        try:
            report.count(
                _record_event(
                    store, event, namespace=namespace, registry=registry, actor=actor
                )
            )
        except (StoreError, IntegrityError):
            raise
        except (InvalidArgument, ImageNotFound, Conflict) as e:
            report.rejected.append(_rejection(index, event, e))
    return report


def _rejection(index: int, event: object, error: Exception) -> dict[str, Any]:
    code = (
        "invalid_argument"
        if isinstance(error, InvalidArgument)
        else "not_found"
        if isinstance(error, ImageNotFound)
        else "conflict"
    )
    event_id = event.get("id") if isinstance(event, dict) else None
    return {
        "index": index,
        "id": event_id if isinstance(event_id, str) else None,
        "error": {"code": code, "message": str(error)},
    }


@dataclass(frozen=True)
class _Event:
    id: str
    action: str
    repository: str
    tag: str | None
    digest: str | None
    media_type: str | None
    size: object
    manifest: bool
    host: str
    actor: str
    reason: str


def _record_event(
    store: ImageStore,
    raw: object,
    *,
    namespace: str,
    registry: str | None,
    actor: str,
) -> Outcome:
    event = _parse(raw, registry, actor)
    if event is None or not event.manifest:
        return "ignored"
    if event.action == "push":
        if event.tag is None:
            return "ignored"  # pushed by digest: no name to record
        return _push(store, event, namespace)
    if event.action == "delete":
        if event.tag is not None:
            name = f"{event.host}/{event.repository}:{event.tag}"
            return _delete(store, event, namespace, name, event.digest)
        assert event.digest is not None
        names = _names_at(store, event, namespace)
        outcomes = [
            _delete(store, event, namespace, name, event.digest) for name in names
        ]
        return _overall(outcomes)
    return "ignored"  # pull, mount, or an action this version does not know


def _parse(raw: object, registry: str | None, actor: str) -> _Event | None:
    """An event's fields, or None for one that is not about a manifest."""
    if not isinstance(raw, dict):
        raise InvalidArgument("event", "must be a JSON object")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        raise InvalidArgument("id", "must be the registry's event id (a UUID)")
    action = raw.get("action")
    target = raw.get("target")
    if not isinstance(action, str) or not isinstance(target, dict):
        raise InvalidArgument(
            "event", "must have an action and a target (a JSON object)"
        )
    request = _mapping(raw.get("request"))
    url = target.get("url")
    media_type = target.get("mediaType")
    # A delete names no media type: by tag it is a tag's, by digest a
    # manifest's or a blob's (no name points at a blob: nothing to delete).
    manifest = action == "delete" or (
        (isinstance(url, str) and "/manifests/" in url)
        or (isinstance(media_type, str) and "manifest" in media_type)
    )
    if action not in ("push", "delete") or not manifest:
        return None
    repository = target.get("repository")
    if not isinstance(repository, str) or not repository:
        raise InvalidArgument("target.repository", "is required")
    tag = target.get("tag") or None
    if tag is not None and (not isinstance(tag, str) or not _TAG.fullmatch(tag)):
        raise InvalidArgument("target.tag", "is not a tag")
    digest = target.get("digest") or None
    if digest is not None:
        problem = digest_problem(digest) if isinstance(digest, str) else "not a string"
        if problem:
            raise InvalidArgument("target.digest", problem)
    if digest is None and (action == "push" or tag is None):
        raise InvalidArgument("target.digest", "is required")
    host = registry or request.get("host")
    if not isinstance(host, str) or not host:
        raise InvalidArgument(
            "request.host", "is missing: give ?registry=HOST to name the registry"
        )
    who = _mapping(raw.get("actor")).get("name")
    return _Event(
        id=event_id,
        action=action,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type=media_type if isinstance(media_type, str) else None,
        size=target.get("size", target.get("length")),
        manifest=True,
        host=host,
        actor=who if isinstance(who, str) and who else actor,
        reason=_reason(event_id, action, tag, request),
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def marker(event_id: str) -> str:
    """How a reason starts when an event with this id wrote it."""
    return f"distribution event {event_id}:"


def _reason(
    event_id: str, action: str, tag: str | None, request: Mapping[str, Any]
) -> str:
    what = "tag delete" if action == "delete" and tag else f"manifest {action}"
    details = [
        f"request {_text(request.get('id'))}",
        f"user agent {_text(request.get('useragent'))}",
    ]
    return f"{marker(event_id)} {what} ({', '.join(details)})"


def _text(value: object) -> str:
    if not isinstance(value, str) or not value:
        return "-"
    # What a reason may not hold (NUL, lone surrogates) must not cost the event.
    text = value.encode("utf-8", "replace").decode().replace("\x00", "?")
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def _seen(entries: list[AuditEntry], event: _Event) -> bool:
    start = marker(event.id)
    return any(entry.reason and entry.reason.startswith(start) for entry in entries)


def _history(store: ImageStore, name: str, namespace: str) -> list[AuditEntry]:
    try:
        return store.history(name, namespace=namespace)
    except ImageNotFound:
        return []


def _push(store: ImageStore, event: _Event, namespace: str) -> Outcome:
    name = f"{event.host}/{event.repository}:{event.tag}"
    target = {"mediaType": event.media_type, "digest": event.digest, "size": event.size}
    for _ in range(_ATTEMPTS):
        entries = _history(store, name, namespace)
        if _seen(entries, event):
            return "duplicate"
        last = entries[-1] if entries else None
        live = last is not None and last.kind == "registered"
        try:
            image = store.register(
                name,
                target,
                last.labels if live and last is not None else None,
                namespace=namespace,
                actor=event.actor,
                reason=event.reason,
                expect="absent" if last is None else last.version,
            )
        except ImmutableImage:
            raise
        except Conflict:
            continue  # another writer got in first: read again
        return (
            "unchanged"
            if last is not None and image.version == last.version
            else ("recorded")
        )
    raise StoreError(f'gave up recording event {event.id}: "{name}" kept moving')


def _delete(
    store: ImageStore, event: _Event, namespace: str, name: str, digest: str | None
) -> Outcome:
    for _ in range(_ATTEMPTS):
        entries = _history(store, name, namespace)
        if _seen(entries, event):
            return "duplicate"
        if not entries or entries[-1].kind != "registered":
            return "ignored"  # already gone: the event no longer applies
        try:
            store.delete(
                name,
                namespace=namespace,
                actor=event.actor,
                reason=event.reason,
                if_digest=digest,
                expect=entries[-1].version,
            )
        except ImmutableImage:
            raise
        except ImageNotFound:
            return "ignored"  # at another digest now: not what was deleted
        except Conflict:
            continue
        return "recorded"
    raise StoreError(f'gave up recording event {event.id}: "{name}" kept moving')


def _names_at(store: ImageStore, event: _Event, namespace: str) -> list[str]:
    """The live names of the event's repository that point at its digest."""
    prefix = f"{event.host}/{event.repository}:"
    images = store.list(f'target.digest=="{event.digest}"', namespace=namespace)
    return [
        image.name
        for image in images
        if image.name.startswith(prefix) and _TAG.fullmatch(image.name[len(prefix) :])
    ]


def _overall(outcomes: list[Outcome]) -> Outcome:
    """One outcome for a manifest delete of several names."""
    for outcome in ("recorded", "duplicate"):
        if outcome in outcomes:
            return outcome
    return "ignored"
