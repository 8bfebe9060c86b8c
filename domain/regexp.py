"""Go's regular expressions, through RE2, for the `~=` of containerd's filters.

containerd compiles a `~=` value with Go's `regexp`, which is RE2's syntax and
semantics: linear time in the text whatever the pattern (no backtracking, so
`(a+)+$` cannot run for ever), leftmost-first matching, `\\w`, `\\d`, `\\s`
and `\\b` ASCII-only, `$` only at the very end of the text unless `(?m)`,
Unicode classes (`\\pL`, `\\p{Greek}`), `\\z`, `\\Q...\\E`, flags `(?imsU)`
and `\\x{61}`. What RE2 has no linear-time way to do is refused: lookarounds,
backreferences, atomic groups, possessive quantifiers, `\\Z`.

This module is the one place a `~=` value is compiled. It uses the RE2
library itself (google-re2) with its default options, which are Go's
`syntax.Perl`, and refuses the one escape RE2 takes and Go does not: `\\C`
(any single byte), which could split a UTF-8 character.
"""

from __future__ import annotations

from typing import Any

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error comes back as an exception; no stderr


class RegexpError(ValueError):
    """A pattern Go's regexp would not compile; the message says why."""


class Regexp:
    """A compiled pattern, searched for anywhere in a text (Go's MatchString)."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        """Compile `pattern` with Go's syntax; RegexpError if it is not one."""
        _refuse_any_byte(pattern)
        try:
            self._compiled: Any = re2.compile(pattern, _OPTIONS)
        except re2.error as e:
            raise RegexpError(_message(e)) from None
        self.pattern = pattern

    def search(self, text: str) -> bool:
        """Whether the pattern matches somewhere in `text`."""
        return self._compiled.search(text) is not None

    def __repr__(self) -> str:
        return f"Regexp({self.pattern!r})"


def _message(error: Exception) -> str:
    detail = error.args[0] if error.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    return str(detail) or "not a regular expression"


def _refuse_any_byte(pattern: str) -> None:
    # Go's parser refuses \C everywhere; RE2 takes it outside a class (inside
    # one, RE2 refuses it too). Escapes are two characters, and \Q...\E quotes.
    i = 0
    while i < len(pattern) - 1:
        if pattern[i] != "\\":
            i += 1
            continue
        escaped = pattern[i + 1]
        if escaped == "C":
            raise RegexpError("invalid escape sequence: \\C")
        if escaped == "Q":
            end = pattern.find("\\E", i + 2)
            i = len(pattern) if end < 0 else end + 2
            continue
        i += 2
