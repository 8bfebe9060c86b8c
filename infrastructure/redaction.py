"""Keeping PostgreSQL passwords out of every message, however the URL is written.

A URL that reaches a message goes through `redact_url`, and text that a driver
wrote about a connection (which may quote what it parsed) through `scrub`.
`check_credentials` refuses, before any parser sees it, a URL whose user
information a parser could split in the wrong place: an unencoded `/` in a
password makes the rest of it a database name, `#` a fragment, `@` a host,
and a stray `%` an "invalid percent-encoded token" quoted in the error.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from imageledger.infrastructure.errors import StoreError

HIDDEN = "***"
# scheme:// or scheme: (a URL with a slash missing is still a URL to hide).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(//?)?")
_BAD_IN_CREDENTIALS = re.compile(r"[/?#@\s]|%(?![0-9A-Fa-f]{2})")


def redact_url(url: str) -> str:
    """`url` with its user information and any `password` parameter as ***.

    Everything between the scheme's `://` and the last `@` is hidden (user
    name too: with a malformed URL, no one can tell where the name ends), as
    is the value of every query parameter named `password` (percent-encoded
    or not), up to the next `&`. Text without a scheme is returned as it is.
    """
    scheme = _SCHEME.match(url)
    if scheme is None:
        return url
    head, rest = url[: scheme.end()], url[scheme.end() :]
    _, at, host = rest.rpartition("@")
    if at:
        rest = f"{HIDDEN}@{host}"
    return head + _without_password_parameter(rest)


def _without_password_parameter(rest: str) -> str:
    path, question, query = rest.partition("?")
    if not question:
        return rest
    pieces = []
    for piece in query.split("&"):
        key, equals, _ = piece.partition("=")
        if unquote(key).strip().lower() == "password":
            piece = f"{key}{equals}{HIDDEN}"
        pieces.append(piece)
    return f"{path}?{'&'.join(pieces)}"


# A driver's message is scrubbed of passwords this long or longer: hiding a
# shorter one would turn every such letter of the message into ***, and a
# password that short is no secret anyway.
MIN_SCRUBBED = 4


def secrets(url: str, *also: str) -> list[str]:
    """Every form in which a message could quote the URL's password (or the
    texts `also`): the user information whole and the password, raw, decoded
    and re-encoded."""
    found: list[str] = list(also)
    scheme = _SCHEME.match(url)
    rest = url[scheme.end() :] if scheme is not None else ""
    credentials, at, _ = rest.rpartition("@")
    if at and credentials:
        found += [credentials, credentials.partition(":")[2]]
    _, question, query = rest.partition("?")
    for piece in query.split("&") if question else []:
        key, _, value = piece.partition("=")
        if unquote(key).strip().lower() == "password" and value:
            found.append(value)
    forms = {f for s in found for f in (s, unquote(s), quote(unquote(s), safe=""))}
    # Longest first, so a password is hidden whole before any piece of it.
    return sorted((f for f in forms if len(f) >= MIN_SCRUBBED), key=len, reverse=True)


def scrub(text: str, url: str, *also: str) -> str:
    """`text` (a driver's message) with the URL's secrets (and `also`, such as
    the password as parsed) replaced by ***."""
    for secret in secrets(url, *also):
        text = text.replace(secret, HIDDEN)
    return text


def check_credentials(url: str) -> None:
    """Refuse `url` if its user information is not cleanly percent-encoded.

    The user information is what lies between `://` and the last `@`. It may
    hold no `/`, `?`, `#`, `@` or white space, and `%` only as the start of a
    `%XX` escape; otherwise parsers disagree on where the password ends and
    quote the rest as a host, port or database. StoreError, password hidden.
    """
    scheme = _SCHEME.match(url)
    rest = url if scheme is None else url[scheme.end() :]
    credentials, at, _ = rest.rpartition("@")
    if at and _BAD_IN_CREDENTIALS.search(credentials):
        raise StoreError(
            f"cannot open {redact_url(url)!r}: not a valid PostgreSQL URL (the user "
            "name or password has a character that must be percent-encoded: "
            "/ as %2F, ? as %3F, # as %23, @ as %40, % as %25)"
        )
