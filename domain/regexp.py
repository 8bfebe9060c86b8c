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
`syntax.Perl`, and refuses the two things RE2 takes and Go does not: `\\C`
(any single byte, which could split a UTF-8 character) and two groups of one
name.
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
        _refuse_what_go_refuses(pattern)
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


def _refuse_what_go_refuses(pattern: str) -> None:
    # Two things RE2 takes and Go's parser refuses: \C (RE2 takes it outside a
    # class) and a name given to two groups. RE2 itself checks everything else,
    # so this only walks the pattern: escapes are two characters, \Q...\E
    # quotes, and a class runs to its first ] (a leading one is literal).
    names: set[str] = set()
    i, end = 0, len(pattern)
    while i < end:
        c = pattern[i]
        if c == "\\" and i + 1 < end:
            escaped = pattern[i + 1]
            if escaped == "C":
                raise RegexpError("invalid escape sequence: \\C")
            if escaped == "Q":
                quoted_end = pattern.find("\\E", i + 2)
                i = end if quoted_end < 0 else quoted_end + 2
            else:
                i += 2
        elif c == "[":
            i = _class_end(pattern, i + 1)
        elif pattern.startswith(("(?P<", "(?<"), i):
            opened = pattern.index("<", i) + 1
            closed = pattern.find(">", opened)
            name = pattern[opened:closed]
            if closed > 0 and name in names:
                raise RegexpError(f"duplicate capture group name: {name}")
            names.add(name)
            i = opened
        else:
            i += 1


def _class_end(pattern: str, i: int) -> int:
    """Where the class whose body starts at `i` ends (past its ])."""
    end = len(pattern)
    if i < end and pattern[i] == "^":
        i += 1
    if i < end and pattern[i] == "]":
        i += 1
    while i < end and pattern[i] != "]":
        if pattern[i] == "\\":
            i += 2
        elif pattern.startswith("[:", i) and pattern.find(":]", i + 2) > 0:
            i = pattern.index(":]", i + 2) + 2
        else:
            i += 1
    return i + 1
