"""The auditors' pages of `imageledger serve`: server-rendered HTML over the
same Service (and so the same store, tokens and caps) as the JSON API.

Pages: the images of a namespace, a name's timeline (an inline SVG band per
target digest, and its events in pages), where a digest is or was, the diff
of two points, the global log and verify. They need no script: the forms are
plain GET forms (verify and login POST). Every response carries a
Content-Security-Policy of `default-src 'self'`, the templates autoescape,
and every value shown passes through `printable` first, so a control
character or a bidi override in an actor, reason or label shows as `\\u202e`
instead of acting on the page.

With a token file, a page needs a read token: the `Authorization` header, or
the cookie `/ui/login` sets (HttpOnly, SameSite=Strict). The token is never
written into a page or a message.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Awaitable, Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from imageledger.cli_audit import diff_rows
from imageledger.cli_context import moment, precise_moment, printable
from imageledger.domain.names import DEFAULT_NAMESPACE
from imageledger.errors import ImageLedgerError, IntegrityError, InvalidArgument
from imageledger.projections.audit import KINDS, AuditEntry
from imageledger.serve import (
    ANONYMOUS,
    Caller,
    HttpError,
    Service,
    query_integer,
    query_when,
    status_of,
)
from imageledger.timeline import Timeline, marks, short, timeline

if TYPE_CHECKING:
    from imageledger.projections.current_view import Image

PAGE_SIZE = 200
"""Rows per page of a table (a history, the log, the images)."""

MAX_NAMESPACES = 100
"""Namespaces offered by the switcher."""

COOKIE = "imageledger_token"
CSP = "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
HOME = "/ui/namespaces/default/images"

_HERE = Path(__file__).parent
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def _shown(value: Any) -> Any:
    """Every `{{ value }}` of a template: strings with what could act on the
    page (controls, bidi overrides) made visible; autoescape does the rest."""
    return printable(value) if type(value) is str else value


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(_HERE / "templates"),
    autoescape=True,
    finalize=_shown,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _path(text: str) -> str:
    """`text` as one URL path segment (a name keeps its `/`, `:` and `@`)."""
    return quote(text, safe="/:@")


_ENVIRONMENT.filters["path"] = _path
_ENVIRONMENT.filters["moment"] = moment
_ENVIRONMENT.filters["precise"] = precise_moment


def routes(service: Service) -> list[Route]:
    """The pages' routes, each through `service`'s store and tokens."""
    pages: list[tuple[str, str, Page]] = [
        ("/ui/namespaces/{ns}/images", "GET", _images),
        ("/ui/namespaces/{ns}/history/{name:path}", "GET", _timeline),
        ("/ui/where", "GET", _where_form),
        ("/ui/where/{digest}", "GET", _where),
        ("/ui/diff", "GET", _diff),
        ("/ui/log", "GET", _log),
        ("/ui/verify", "GET", _verify),
        ("/ui/verify", "POST", _verify),
    ]
    found = [
        Route(path, _page(service, handler), methods=[method])
        for path, method, handler in pages
    ]
    return [
        Route("/", _home, methods=["GET"]),
        Route("/ui", _home, methods=["GET"]),
        Route("/ui/", _home, methods=["GET"]),
        Route("/ui/static/{file}", _static, methods=["GET"]),
        Route("/ui/login", _login(service), methods=["GET", "POST"]),
        Route("/ui/logout", _logout, methods=["POST"]),
        *found,
    ]


# Responses.


def render(template: str, status: int = 200, **values: Any) -> Response:
    """The page `template` filled with `values`, with the pages' headers."""
    text = _ENVIRONMENT.get_template(template).render(**values)
    return Response(text, status_code=status, media_type="text/html", headers=HEADERS)


async def rendered(template: str, status: int = 200, **values: Any) -> Response:
    """`render` in a worker thread: a long page must not hold up the event
    loop (and with it the event streams of other clients)."""
    return await run_in_threadpool(lambda: render(template, status, **values))


def _error_page(
    status: int, code: str, message: str, caller: Caller | None
) -> Response:
    return render(
        "error.html", status, code=code, message=message, caller=caller, title=code
    )


Page = Callable[[Service, Request, Caller], Awaitable[Response]]


def _page(service: Service, handler: Page) -> Callable[[Request], Awaitable[Response]]:
    """`handler` behind the read check; errors as an HTML page."""

    async def endpoint(request: Request) -> Response:
        caller: Caller | None = None
        try:
            caller = _caller(service, request)
            if caller is None:
                return _login_page(request, 401, "a read token is required")
            return await handler(service, request, caller)
        except HttpError as e:
            if e.status == 401:
                return _login_page(request, 401, e.message)
            return _error_page(e.status, e.code, e.message, caller)
        except ImageLedgerError as e:
            status, code = status_of(e)
            return _error_page(status, code, str(e), caller)

    return endpoint


async def _home(request: Request) -> Response:
    return RedirectResponse(HOME, status_code=303)


async def _static(request: Request) -> Response:
    name = request.path_params["file"]
    found = _STATIC.get(name)
    if found is None:
        return Response("not found\n", 404, media_type="text/plain", headers=HEADERS)
    body, kind = found
    return Response(
        body,
        media_type=kind,
        headers={**HEADERS, "Cache-Control": "public, max-age=300"},
    )


def _load_static() -> dict[str, tuple[bytes, str]]:
    """The files of static/, read once (a fixed set: no path from a request
    ever reaches the file system)."""
    folder = _HERE / "static"
    return {
        path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
        for path in sorted(folder.iterdir())
        if path.suffix in _STATIC_TYPES and path.is_file()
    }


_STATIC = _load_static()


# Who is calling: the Authorization header, else the login cookie.


def _caller(service: Service, request: Request) -> Caller | None:
    """The caller allowed to read, None when no token was given; HttpError
    (401) for a token that is not known."""
    if service.tokens is None:
        return Caller(ANONYMOUS, "read")
    if "authorization" in request.headers:
        return service.caller(request, "read")
    cookie = request.cookies.get(COOKIE)
    if cookie is None:
        return None
    token = _cookie_token(cookie)
    caller = None if token is None else service.tokens.caller(token)
    if caller is None:
        raise HttpError(401, "unauthorized", "the token of this browser is not known")
    return caller


def _cookie_value(token: str) -> str:
    # base64url: a token may hold any character but whitespace, a cookie may not.
    return base64.urlsafe_b64encode(token.encode("utf-8", "surrogateescape")).decode()


def _cookie_token(value: str) -> str | None:
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
        return raw.decode("utf-8", "surrogateescape")
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None


def _next(value: str | None) -> str:
    """Where to go after login: a path of this site only (never `//host`)."""
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()
    ):
        return value
    return HOME


def _login_page(request: Request, status: int, message: str | None) -> Response:
    wanted = request.url.path
    # Back to the page asked for, but never with a token in its query.
    if request.url.query and "token" not in request.query_params:
        wanted += f"?{request.url.query}"
    if wanted.startswith("/ui/login"):
        wanted = _next(request.query_params.get("next"))
    return render(
        "login.html",
        status,
        message=message,
        next=wanted,
        caller=None,
        title="Log in",
    )


def _login(service: Service) -> Callable[[Request], Awaitable[Response]]:
    async def login(request: Request) -> Response:
        if request.method == "POST":
            try:
                form = parse_qs((await service.body(request)).decode("utf-8"))
            except HttpError as e:
                return _error_page(e.status, e.code, e.message, None)
            except UnicodeDecodeError:
                return _login_page(request, 400, "the form is not UTF-8")
            token = (form.get("token") or [""])[0]
            wanted = _next((form.get("next") or [""])[0])
        else:
            given = request.query_params.get("token")
            if given is None:
                return _login_page(request, 200, None)
            token, wanted = given, _next(request.query_params.get("next"))
        if service.tokens is None:
            return RedirectResponse(wanted, status_code=303)
        token = token.strip()
        if not token or service.tokens.caller(token) is None:
            return _login_page(request, 401, "the token is not known")
        response = RedirectResponse(wanted, status_code=303)
        response.set_cookie(
            COOKIE,
            _cookie_value(token),
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",
        )
        return response

    return login


async def _logout(request: Request) -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


# The pages.


async def _images(service: Service, request: Request, caller: Caller) -> Response:
    namespace = request.path_params["ns"]
    filters = [f for f in request.query_params.getlist("filter") if f.strip()]
    after = request.query_params.get("after") or None
    store = service.store

    def page() -> tuple[list[Image], list[str]]:
        images: Iterator[Image] = store.list(*filters, namespace=namespace)
        if after is not None:
            images = (image for image in images if image.name > after)
        return list(islice(images, PAGE_SIZE + 1)), store.namespaces()

    images, namespaces = await run_in_threadpool(page)
    more = images[PAGE_SIZE - 1].name if len(images) > PAGE_SIZE else None
    following = None
    if more is not None:
        following = urlencode([*(("filter", f) for f in filters), ("after", more)])
    if namespace not in namespaces:
        namespaces = sorted([*namespaces, namespace])
    return await rendered(
        "images.html",
        caller=caller,
        title=f"Images of {namespace}",
        namespace=namespace,
        namespaces=namespaces[:MAX_NAMESPACES],
        filters=filters or [""],
        images=images[:PAGE_SIZE],
        following=following,
    )


async def _timeline(service: Service, request: Request, caller: Caller) -> Response:
    namespace = request.path_params["ns"]
    name = request.path_params["name"]
    number = query_integer(request.query_params.get("page"), "page")

    def read() -> tuple[list[AuditEntry], Timeline]:
        entries = service.store.history(name, namespace=namespace)
        return entries, timeline(entries)

    entries, chart = await run_in_threadpool(read)
    pages = max(1, math.ceil(len(entries) / PAGE_SIZE))
    if number is None:
        number = 1
    if not 1 <= number <= pages:
        raise InvalidArgument("page", f"must be between 1 and {pages}, got {number}")
    start = (number - 1) * PAGE_SIZE
    return await rendered(
        "timeline.html",
        caller=caller,
        title=name,
        namespace=namespace,
        name=name,
        chart=chart,
        entries=entries[start : start + PAGE_SIZE],
        page=number,
        pages=pages,
        total=len(entries),
    )


async def _where_form(service: Service, request: Request, caller: Caller) -> Response:
    digest = (request.query_params.get("digest") or "").strip()
    if digest:
        return RedirectResponse(f"/ui/where/{quote(digest, safe=':')}", 303)
    return await rendered(
        "where.html", caller=caller, title="Where", digest="", rows=None
    )


async def _where(service: Service, request: Request, caller: Caller) -> Response:
    digest = request.path_params["digest"]
    namespace = request.query_params.get("namespace") or None
    intervals = await run_in_threadpool(
        service.store.where, digest, namespace=namespace
    )
    return await rendered(
        "where.html",
        caller=caller,
        title=f"Where {digest}",
        digest=digest,
        rows=intervals,
    )


async def _diff(service: Service, request: Request, caller: Caller) -> Response:
    query = request.query_params
    given = {k: (query.get(k) or "").strip() for k in ("a", "b", "namespace")}
    rows = None
    if given["a"] or given["b"]:
        a, b = query_when(given["a"] or None, "a"), query_when(given["b"] or None, "b")
        if a is None or b is None:
            raise InvalidArgument("a" if a is None else "b", "is required (a WHEN)")
        changes = await run_in_threadpool(
            service.store.diff, a, b, namespace=given["namespace"] or None
        )
        rows = diff_rows(changes)
    return await rendered(
        "diff.html", caller=caller, title="Diff", given=given, rows=rows
    )


_LOG_FIELDS = ("since", "until", "actor", "name", "digest", "kind", "namespace")


async def _log(service: Service, request: Request, caller: Caller) -> Response:
    query = request.query_params
    given = {k: (query.get(k) or "").strip() for k in _LOG_FIELDS}
    after = query_integer(query.get("after") or None, "after")
    arguments: dict[str, Any] = {k: v or None for k, v in given.items()}
    arguments["since"] = query_when(arguments["since"], "since")
    arguments["until"] = query_when(arguments["until"], "until")

    def page() -> list[AuditEntry]:
        found = service.store.log(after=after, limit=PAGE_SIZE + 1, **arguments)
        return list(found)

    entries = await run_in_threadpool(page)
    following = None
    if len(entries) > PAGE_SIZE:
        kept = [(k, v) for k, v in given.items() if v]
        following = urlencode([*kept, ("after", entries[PAGE_SIZE - 1].position)])
    return await rendered(
        "log.html",
        caller=caller,
        title="Log",
        given=given,
        kinds=KINDS,
        entries=entries[:PAGE_SIZE],
        following=following,
        first=after is not None,
        base=urlencode([(k, v) for k, v in given.items() if v]),
    )


async def _verify(service: Service, request: Request, caller: Caller) -> Response:
    store = service.store
    report, failure, given = None, None, ""
    if request.method == "POST":
        form = parse_qs((await service.body(request)).decode("utf-8", "replace"))
        given = (form.get("checkpoint") or [""])[0].strip()
        try:
            report = await run_in_threadpool(store.verify, given or None)
        except IntegrityError as e:
            failure = str(e)
    point = await run_in_threadpool(store.checkpoint)
    return await rendered(
        "verify.html",
        caller=caller,
        title="Verify",
        checkpoint=point,
        report=report,
        failure=failure,
        given=given,
    )


_ENVIRONMENT.filters["short"] = short
_ENVIRONMENT.filters["marks"] = marks


_ENVIRONMENT.filters["marks"] = marks
_ENVIRONMENT.globals["DEFAULT_NAMESPACE"] = DEFAULT_NAMESPACE
