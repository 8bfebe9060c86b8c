"""The HTTP service over one ImageStore: `create_app(store, ...)` builds the
Starlette application that `imageledger serve` runs on uvicorn.

Every store call runs in a worker thread, off the event loop. One store serves
every thread: its SQLite backend gives each thread its own reader connection
and serialises writes on the file's lock, its PostgreSQL backend draws from a
connection pool. Errors become `{"error": {"code": C, "message": M}}` in one
place (`_error_response`), with the library's message; JSON bodies use the
command line's `--json` shapes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import json
import os
import stat
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import click
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from imageledger.cli_audit import diff_json, diff_rows, interval_json
from imageledger.cli_context import (
    WHEN,
    entry_json,
    image_json,
    terminal_safe_json,
)
from imageledger.domain.errors import shown_repr
from imageledger.domain.labels import validate_actor
from imageledger.domain.names import DEFAULT_NAMESPACE, validate_namespace
from imageledger.errors import (
    Conflict,
    ImageLedgerError,
    ImageNotFound,
    IntegrityError,
    InvalidArgument,
    StoreError,
)
from imageledger.notifications import events_of, record_envelope
from imageledger.openapi import openapi_document

if TYPE_CHECKING:
    from imageledger.projections.audit import AuditEntry
    from imageledger.projections.current_view import Image
    from imageledger.store import ImageStore

Scope = Literal["read", "write"]
T = TypeVar("T")

WORKERS = 8
"""Store calls running at once (the PostgreSQL pool holds ten connections)."""

MAX_BODY = 1024 * 1024
"""The default cap on a request body, in bytes (`serve --max-body`)."""

MAX_TOKEN_FILE = 1024 * 1024
ANONYMOUS = "anonymous"
_JSON = "application/json"


# Tokens and who is calling.


@dataclass(frozen=True)
class Caller:
    """Who makes a request: the token's NAME (the actor of its writes) and scope."""

    name: str
    scope: Scope


@dataclass(frozen=True)
class Tokens:
    """The bearer tokens a server accepts, kept as their sha256 digests."""

    entries: tuple[tuple[bytes, Caller], ...]

    def caller(self, token: str) -> Caller | None:
        """The caller `token` belongs to, or None. Every entry is compared, in
        constant time, so the answer's timing says nothing about the tokens."""
        given = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        for digest, caller in self.entries:
            if hmac.compare_digest(given, digest):
                found = caller
        return found


def load_tokens(path: str | os.PathLike[str]) -> Tokens:
    """Read a token file: one `SCOPE NAME TOKEN` a line (`read` or `write`),
    blank lines and `#` comments ignored.

    Raises InvalidArgument naming the line (never showing a token) for a bad
    line, a repeated token, a file that is a symlink, not a regular file, or
    larger than 1 MiB, and when it holds no token at all.
    """
    text = _read_capped(Path(path), MAX_TOKEN_FILE)
    entries: list[tuple[bytes, Caller]] = []
    seen: set[bytes] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        where = f"{path}, line {number}"
        if len(words) != 3:
            raise InvalidArgument(
                "--token-file", f"{where}: expected 'SCOPE NAME TOKEN'"
            )
        scope, name, token = words
        if scope not in ("read", "write"):
            raise InvalidArgument(
                "--token-file", f"{where}: the scope must be 'read' or 'write'"
            )
        try:
            validate_actor(name)
        except InvalidArgument as e:
            raise InvalidArgument("--token-file", f"{where}: the name {e.rule}") from e
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        if digest in seen:
            raise InvalidArgument("--token-file", f"{where}: this token is given twice")
        seen.add(digest)
        entries.append((digest, Caller(name, scope)))  # type: ignore[arg-type]
    if not entries:
        raise InvalidArgument("--token-file", f"{path}: holds no token")
    return Tokens(tuple(entries))


def _read_capped(path: Path, cap: int) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise InvalidArgument(
            "--token-file", f"cannot open {str(path)!r}: {e.strerror}"
        ) from e
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidArgument("--token-file", f"{str(path)!r} is not a file")
        data = file.read(cap + 1)
    if len(data) > cap:
        raise InvalidArgument("--token-file", f"{str(path)!r} is larger than 1 MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidArgument("--token-file", f"{str(path)!r} is not UTF-8") from e


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine (`localhost`, 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Errors.


class HttpError(Exception):
    """An error answered as is: an HTTP status, a code and a message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def status_of(error: ImageLedgerError) -> tuple[int, str]:
    """The HTTP status and error code of a library error (the pages use it too)."""
    if isinstance(error, InvalidArgument):
        return 400, "invalid_argument"
    if isinstance(error, ImageNotFound):
        return 404, "not_found"
    if isinstance(error, Conflict):
        return 409, "conflict"
    if isinstance(error, IntegrityError):
        return 500, "integrity"
    if isinstance(error, StoreError):
        return 503, "unavailable"
    return 500, "internal"


_HTTP_CODES = {
    400: "invalid_argument",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
}


def error_body(status: int, code: str, message: str) -> Response:
    """The JSON error response every failure is answered with."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return json_response(
        {"error": {"code": code, "message": message}}, status, headers=headers
    )


async def _error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HttpError):
        return error_body(exc.status, exc.code, exc.message)
    if isinstance(exc, ImageLedgerError):
        status, code = status_of(exc)
        return error_body(status, code, str(exc))
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "invalid_argument")
        return error_body(exc.status_code, code, exc.detail)
    return error_body(500, "internal", "internal error (see the server's log)")


def json_response(
    value: Any, status: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    """`value` as JSON, with what a terminal or a page could act on escaped."""
    text = terminal_safe_json(json.dumps(value, ensure_ascii=False))
    return Response(
        text,
        status_code=status,
        media_type=_JSON,
        headers={"X-Content-Type-Options": "nosniff", **(headers or {})},
    )


# The application.


@dataclass
class Service:
    """What every endpoint shares: the store, the tokens, the caps."""

    store: ImageStore
    tokens: Tokens | None
    max_body: int
    closing: threading.Event
    _limiter: anyio.CapacityLimiter | None = None

    async def run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`call(*args, **kwargs)` in a worker thread, at most WORKERS at once:
        a PostgreSQL store's pool has as many connections (and one to spare),
        so a burst of requests waits here rather than for a connection."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(WORKERS)
        return await anyio.to_thread.run_sync(
            functools.partial(call, *args, **kwargs), limiter=self._limiter
        )

    def caller(self, request: Request, scope: Scope) -> Caller:
        """The caller of `request`, allowed `scope`; else 401 or 403."""
        if self.tokens is None:
            return Caller(ANONYMOUS, "write")
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise HttpError(401, "unauthorized", "a bearer token is required")
        caller = self.tokens.caller(token.strip())
        if caller is None:
            raise HttpError(401, "unauthorized", "the bearer token is not known")
        if scope == "write" and caller.scope != "write":
            raise HttpError(
                403, "forbidden", f"the token of {caller.name!r} may only read"
            )
        return caller

    async def body(self, request: Request) -> bytes:
        """The request's body, refused with 413 past `max_body` bytes (before
        reading it when Content-Length says so)."""
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_body(self, request: Request) -> Any:
        """The request's body parsed as JSON (400 if it is not)."""
        data = await self.body(request)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidArgument("body", f"is not JSON: {e}") from e

    def _too_large(self) -> HttpError:
        return HttpError(
            413, "too_large", f"the request body is larger than {self.max_body} bytes"
        )


Endpoint = Callable[[Service, Request, Caller], Awaitable[Response]]


def _endpoint(
    service: Service, handler: Endpoint, scope: Scope | None
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        caller = (
            Caller(ANONYMOUS, "read")
            if scope is None
            else service.caller(request, scope)
        )
        return await handler(service, request, caller)

    return endpoint


def create_app(
    store: ImageStore,
    *,
    tokens: Tokens | None = None,
    max_body: int = MAX_BODY,
    closing: threading.Event | None = None,
) -> Starlette:
    """The HTTP application serving `store`.

    `tokens` None lets every request in as `anonymous` (the command refuses to
    listen beyond loopback then). Request bodies are capped at `max_body`
    bytes. `closing`, once set, ends the open event streams, so that a server
    asked to stop is not held up by them.
    """
    service = Service(store, tokens, max_body, closing or threading.Event())
    routes = [
        Route(
            path,
            _endpoint(service, handler, scope),
            methods=[method],
            name=handler.__name__.strip("_"),
        )
        for path, method, scope, handler in ROUTES
    ]
    # The auditors' HTML pages (application/web.py, which imports this module).
    from imageledger import web

    routes += web.routes(service)

    app = Starlette(
        routes=routes,
        exception_handlers={
            HttpError: _error_response,
            ImageLedgerError: _error_response,
            HTTPException: _error_response,
            Exception: _error_response,  # the last resort: logged, answered 500
        },
    )
    app.state.service = service
    return app


# The endpoints.

LOG_PAGE = 500
EVENT_POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
_IMAGE_FIELDS = frozenset(("target", "labels", "immutable", "reason"))


async def _healthz(service: Service, request: Request, caller: Caller) -> Response:
    await service.run(service.store.checkpoint)
    return json_response({"status": "ok"})


async def _list_images(service: Service, request: Request, caller: Caller) -> Response:
    namespace = request.path_params["ns"]
    filters = request.query_params.getlist("filter")

    def listed() -> list[dict[str, Any]]:
        images = service.store.list(*filters, namespace=namespace)
        return [image_json(image) for image in images]

    return json_response({"images": await service.run(listed)})


async def _get_image(service: Service, request: Request, caller: Caller) -> Response:
    image = await service.run(
        service.store.get,
        request.path_params["name"],
        namespace=request.path_params["ns"],
    )
    return _image_response(image)


async def _put_image(service: Service, request: Request, caller: Caller) -> Response:
    body = await service.json_body(request)
    if not isinstance(body, dict):
        raise InvalidArgument("body", "must be a JSON object")
    unknown = sorted(set(body) - _IMAGE_FIELDS)
    if unknown:
        raise InvalidArgument("body", f"unknown field {unknown[0]!r}")
    if "target" not in body:
        raise InvalidArgument("body", "'target' (a descriptor) is required")
    expect = _expect(request, allow_absent=True)
    image = await service.run(
        lambda: service.store.register(
            request.path_params["name"],
            body["target"],
            body.get("labels"),
            namespace=request.path_params["ns"],
            actor=caller.name,
            reason=body.get("reason"),
            expect=expect,
            immutable=body.get("immutable", False),
        )
    )
    return _image_response(image)


async def _delete_image(service: Service, request: Request, caller: Caller) -> Response:
    query = request.query_params
    force = _flag(query.get("force"), "force")
    expect = _expect(request, allow_absent=False)
    await service.run(
        lambda: service.store.delete(
            request.path_params["name"],
            namespace=request.path_params["ns"],
            actor=caller.name,
            reason=query.get("reason"),
            if_digest=query.get("if_digest"),
            expect=expect if isinstance(expect, int) else None,
            force=force,
        )
    )
    return Response(status_code=204)


async def _history(service: Service, request: Request, caller: Caller) -> Response:
    def entries() -> list[dict[str, Any]]:
        found = service.store.history(
            request.path_params["name"], namespace=request.path_params["ns"]
        )
        return [entry_json(entry) for entry in found]

    return json_response({"entries": await service.run(entries)})


async def _log(service: Service, request: Request, caller: Caller) -> Response:
    query = request.query_params
    limit = query_integer(query.get("limit"), "limit")
    arguments: dict[str, Any] = {
        "since": query_when(query.get("since"), "since"),
        "until": query_when(query.get("until"), "until"),
        "actor": query.get("actor"),
        "name": query.get("name"),
        "digest": query.get("digest"),
        "kind": query.get("kind"),
        "namespace": query.get("namespace"),
    }
    after = query_integer(query.get("after"), "after")
    store = service.store

    def page(after: int | None, left: int | None) -> list[AuditEntry]:
        size = LOG_PAGE if left is None else min(LOG_PAGE, left)
        return list(store.log(after=after, limit=size, **arguments))

    # The first page is read before answering, so that a bad argument is a 400.
    first = await service.run(page, after, limit)

    async def lines() -> AsyncIterator[str]:
        entries, left = first, limit
        while entries:
            yield "".join(f"{_compact(entry_json(e))}\n" for e in entries)
            if left is not None:
                left -= len(entries)
                if left <= 0:
                    return
            entries = await service.run(page, entries[-1].position, left)

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def _as_of(service: Service, request: Request, caller: Caller) -> Response:
    when = query_when(request.path_params["when"], "when")
    assert when is not None
    filters = request.query_params.getlist("filter")
    namespace = request.path_params["ns"]

    def listed() -> list[dict[str, Any]]:
        past = service.store.as_of(when)
        return [image_json(i) for i in past.list(*filters, namespace=namespace)]

    return json_response({"images": await service.run(listed)})


async def _where(service: Service, request: Request, caller: Caller) -> Response:
    intervals = await service.run(
        service.store.where,
        request.path_params["digest"],
        namespace=request.query_params.get("namespace"),
    )
    return json_response({"intervals": [interval_json(i) for i in intervals]})


async def _diff(service: Service, request: Request, caller: Caller) -> Response:
    query = request.query_params
    a, b = query_when(query.get("a"), "a"), query_when(query.get("b"), "b")
    if a is None or b is None:
        raise InvalidArgument("a" if a is None else "b", "is required (a WHEN)")
    changes = await service.run(
        service.store.diff, a, b, namespace=query.get("namespace")
    )
    return json_response({"changes": [diff_json(row) for row in diff_rows(changes)]})


async def _checkpoint(service: Service, request: Request, caller: Caller) -> Response:
    point = await service.run(service.store.checkpoint)
    return json_response({"position": point.position, "head": point.head})


async def _verify(service: Service, request: Request, caller: Caller) -> Response:
    report = await service.run(
        service.store.verify, request.query_params.get("checkpoint")
    )
    given = report.checkpoint
    return json_response(
        {
            "events": report.events,
            "position": report.position,
            "head": report.head,
            "checkpoint": None
            if given is None
            else {"position": given.position, "head": given.head},
            "views": list(report.views),
        }
    )


async def _events(service: Service, request: Request, caller: Caller) -> Response:
    """Server-sent events: one `event: registered|deleted` per appended event,
    its position as the id (a reconnecting client's Last-Event-ID resumes)."""
    store = service.store
    given = request.query_params.get("after") or request.headers.get("last-event-id")
    namespace = request.query_params.get("namespace")
    after = query_integer(given, "after")
    if after is None:
        after = (await service.run(store.checkpoint)).position

    def page(after: int) -> list[AuditEntry]:
        return list(store.log(after=after, namespace=namespace, limit=LOG_PAGE))

    first = await service.run(page, after)  # a bad argument is a 400

    async def events() -> AsyncIterator[str]:
        entries, position = first, after
        idle = 0.0
        yield ": imageledger events\n\n"
        while not service.closing.is_set():
            for entry in entries:
                data = _compact(entry_json(entry))
                yield f"id: {entry.position}\nevent: {entry.kind}\ndata: {data}\n\n"
                position = entry.position
            if entries:
                idle = 0.0
            else:
                if await request.is_disconnected():
                    return
                await anyio.sleep(EVENT_POLL_SECONDS)
                idle += EVENT_POLL_SECONDS
                if idle >= KEEPALIVE_SECONDS:
                    idle = 0.0
                    yield ": keepalive\n\n"
            entries = await service.run(page, position)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _notifications(
    service: Service, request: Request, caller: Caller
) -> Response:
    """A Distribution notification envelope (see notifications.py)."""
    query = request.query_params
    namespace = query.get("namespace", DEFAULT_NAMESPACE)
    registry = query.get("registry") or None
    events = events_of(await service.json_body(request))
    report = await service.run(
        lambda: record_envelope(
            service.store,
            events,
            namespace=validate_namespace(namespace),
            registry=registry,
            actor=caller.name,
        )
    )
    return json_response(report.as_json())


async def _openapi(service: Service, request: Request, caller: Caller) -> Response:
    return json_response(openapi_document())


# Parsing what a request says.


def _image_response(image: Image) -> Response:
    return json_response(image_json(image), headers={"ETag": f'"{image.version}"'})


def _expect(request: Request, *, allow_absent: bool) -> Literal["absent"] | int | None:
    """The condition of If-None-Match: * (absent) or If-Match: "N" (version N)."""
    match = request.headers.get("if-match")
    none_match = request.headers.get("if-none-match")
    if match is not None and none_match is not None:
        raise InvalidArgument("If-Match", "give If-Match or If-None-Match, not both")
    if none_match is not None:
        if not allow_absent or none_match.strip() != "*":
            raise InvalidArgument("If-None-Match", "only '*' (create only) is allowed")
        return "absent"
    if match is None:
        return None
    version = match.strip().removeprefix("W/").strip('"')
    if not version.isdigit() or not version.isascii():
        raise InvalidArgument("If-Match", 'must be a version, as in "3"')
    return int(version)


def query_integer(text: str | None, field: str) -> int | None:
    """A query parameter as a non-negative integer (None if absent);
    InvalidArgument naming `field` otherwise."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidArgument(
            field, f"must be a non-negative integer, got {shown_repr(text)}"
        )
    return int(text)


def _flag(text: str | None, field: str) -> bool:
    if text is None or text in ("false", "0"):
        return False
    if text in ("true", "1"):
        return True
    raise InvalidArgument(field, f"must be true or false, got {shown_repr(text)}")


def query_when(text: str | None, field: str) -> int | datetime | None:
    """A query parameter as a WHEN: a log position or an RFC 3339 moment
    (None if absent); InvalidArgument naming `field` otherwise."""
    if text is None:
        return None
    try:
        return WHEN.convert(text, None, None)
    except click.BadParameter as e:
        raise InvalidArgument(field, e.message) from e


def _compact(value: Any) -> str:
    return terminal_safe_json(
        json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    )


ROUTES: list[tuple[str, str, Scope | None, Endpoint]] = [
    ("/healthz", "GET", None, _healthz),
    ("/openapi.json", "GET", None, _openapi),
    ("/v1/namespaces/{ns}/images", "GET", "read", _list_images),
    ("/v1/namespaces/{ns}/images/{name:path}", "GET", "read", _get_image),
    ("/v1/namespaces/{ns}/images/{name:path}", "PUT", "write", _put_image),
    ("/v1/namespaces/{ns}/images/{name:path}", "DELETE", "write", _delete_image),
    ("/v1/namespaces/{ns}/history/{name:path}", "GET", "read", _history),
    ("/v1/namespaces/{ns}/as-of/{when}/images", "GET", "read", _as_of),
    ("/v1/log", "GET", "read", _log),
    ("/v1/where/{digest}", "GET", "read", _where),
    ("/v1/diff", "GET", "read", _diff),
    ("/v1/checkpoint", "GET", "read", _checkpoint),
    ("/v1/verify", "POST", "read", _verify),
    ("/v1/events", "GET", "read", _events),
    ("/v1/notifications/distribution", "POST", "write", _notifications),
]
