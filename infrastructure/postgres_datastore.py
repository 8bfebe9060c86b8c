"""PostgreSQL connections as imageledger needs them, built from a URL.

eventsourcing's PostgresDatastore reads its settings from the environment when
its factory builds it; here it is built from the parsed URL instead, with the
URL's libpq parameters (sslmode and the like) passed through unchanged. One
parameter is ours: `schema` (default `public`) puts the store in that schema,
so one database can hold several stores, or a store beside other tables.

Passwords never appear in a message: errors name the server as host:port/db.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg.rows import DictRow, dict_row

from imageledger.domain.errors import InvalidArgument
from imageledger.infrastructure.errors import StoreError
from imageledger.infrastructure.redaction import check_credentials, redact_url, scrub

CONNECT_TIMEOUT = 10  # seconds to reach the server before giving up
POOL_SIZE = 2  # a write and a streaming list() at once, without waiting
POOL_OVERFLOW = 8
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}", re.ASCII)


@dataclass(frozen=True)
class PostgresLocation:
    """A parsed PostgreSQL URL: libpq parameters and the store's schema."""

    params: dict[str, str] = field(repr=False)  # holds the password
    schema: str = "public"
    url: str = field(default="", repr=False)  # as given, password and all

    @property
    def where(self) -> str:
        """host:port/db, for messages (never the user's password)."""
        host = self.params.get("host") or "localhost"
        port = self.params.get("port") or "5432"
        where = f"{host}:{port}/{self.params.get('dbname', '')}"
        return where if self.schema == "public" else f"{where}?schema={self.schema}"

    def redact(self, text: str) -> str:
        """`text` with the password, in any form the URL gave it, as ***."""
        return scrub(text, self.url, self.params.get("password", ""))


def parse_url(url: str) -> PostgresLocation:
    """Split a postgresql:// URL into libpq parameters and our `schema`.

    A URL whose user name or password is not cleanly percent-encoded is
    refused first (see redaction.check_credentials): parsed, its password
    would spill into the host, port or database name, and from there into
    every message that names the server.
    """
    if "://" not in url:
        raise StoreError(
            f"cannot open {redact_url(url)!r}: not a valid PostgreSQL URL "
            "(write postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    check_credentials(url)
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    schema = schemas[-1] if schemas else "public"
    if not _SCHEMA_NAME.fullmatch(schema):
        raise InvalidArgument(
            "location",
            "the schema must be a lowercase SQL name (letters, digits, _), "
            f"not {schema!r}",
        )
    rest = urlencode([(key, value) for key, value in query if key != "schema"])
    libpq_url = urlunsplit(("postgresql", parts.netloc, parts.path, rest, ""))
    try:
        params = psycopg.conninfo.conninfo_to_dict(libpq_url)
    except psycopg.Error as e:
        reason = scrub(" ".join(str(e).split()), url)
        raise StoreError(
            f"cannot open {redact_url(url)!r}: not a valid PostgreSQL URL ({reason})"
        ) from None  # the driver's message may quote the URL, password and all
    return PostgresLocation({k: str(v) for k, v in params.items()}, schema, url)


def connect(location: PostgresLocation) -> psycopg.Connection[DictRow]:
    """One autocommit connection, or StoreError saying why not (no password)."""
    params: dict[str, Any] = dict(location.params)
    try:
        return psycopg.connect(
            **params,
            connect_timeout=CONNECT_TIMEOUT,
            autocommit=True,
            row_factory=dict_row,
        )
    except psycopg.Error as e:
        raise connection_error(location, e) from None


def connection_error(location: PostgresLocation, error: Exception) -> StoreError:
    """The StoreError for a failed connection: one line, password removed."""
    reason = " ".join(str(error).split()).removeprefix("connection failed: ")
    return StoreError(
        f"cannot connect to PostgreSQL at {location.where}: {location.redact(reason)}"
    )


def lock_timeout_setting(seconds: float) -> str:
    """`SET LOCAL lock_timeout` value: PostgreSQL reads 0 as "wait forever",
    SQLite's busy timeout as "do not wait", so 0 becomes one millisecond."""
    return f"{max(1, round(seconds * 1000))}ms"


class LedgerPostgresDatastore(PostgresDatastore):
    """eventsourcing's PostgreSQL datastore on the URL's server and schema.

    `lock_timeout` is how long a write waits for another writer's table lock
    (seconds, fractions allowed); past it the write fails as busy.
    """

    def __init__(self, location: PostgresLocation, *, lock_timeout: float) -> None:
        params = location.params
        super().__init__(
            dbname=params.get("dbname", ""),
            host=params.get("host", ""),
            port=params.get("port", ""),
            user=params.get("user", ""),
            password=params.get("password", ""),
            connect_timeout=CONNECT_TIMEOUT,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            schema=location.schema,
        )
        # Exactly the URL's parameters: an empty host or user given to libpq is
        # not the same as leaving it out (the default socket, the OS user).
        kwargs: dict[str, Any] = {
            **params,
            "connect_timeout": CONNECT_TIMEOUT,
            "row_factory": dict_row,
        }
        self.pool.kwargs = kwargs
        self.location = location
        self.lock_timeout_setting = lock_timeout_setting(lock_timeout)
