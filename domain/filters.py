"""containerd's filter language: parse filter strings, match them against fields.

A port of containerd's `pkg/filters` (parser.go, scanner.go, quote.go and
filter.go of containerd 2.x: main after v2.4.0-beta.0, commit 301026e), corner
for corner, so that a filter means here what it means to `ctr images ls`:

    selectors := selector ("," selector)*        all must match
    selector  := fieldpath [operator value]      no operator: the field is present
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z0-9_]+
    operator  := "==" | "!=" | "~="
    value     := quoted | a run of letters, digits, punctuation and symbols
    quoted    := "..." with Go's backslash escapes; a ~= value may also be
                 quoted as /.../ or |...|

Several filter strings are alternatives: an object matches when any of them
does; no filter strings, or an empty one, match everything. What a field path
names is up to the caller's lookup, which returns the field's value or None
when it is absent; `!=` and `~=` compare an absent field as the empty string,
as containerd does. Values of `~=` are Go regular expressions (RE2, see
the second part below), searched for anywhere in the field, compiled
when the filter is parsed: a value that is not one is an InvalidFilter at the
value's position, where containerd would match nothing.

Positions in errors count characters from 0. The rest follows containerd, even
where it surprises: whitespace may come around an operator and before a field,
but not before a comma or at the end; `\\d` inside /.../ is an illegal escape
(write it unquoted, or as \\\\d); a literal U+FFFD is refused like invalid UTF-8.

The module has three parts, in the order a filter is read: the scanner and
unquoting (ports of containerd's pkg/filters/scanner.go and quote.go), the
regular expressions of `~=` (Go's, through RE2), and the parser with its
selectors.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import re2

from imageledger.domain.errors import InvalidArgument, shown

# The scanner and unquoting.
#
# The scanner and unquoting of containerd's filter language (domain/filters.py).
#
# Ports of containerd's pkg/filters/scanner.go and quote.go, over characters
# instead of bytes. Like Go's, the scanner hands out runes as integers and
# tokens as negative ones; the parser in `filters` drives it.

# Tokens, negative as in Go; what is not a token is a rune (its code point).
EOF, QUOTED, VALUE, FIELD, SEPARATOR, OPERATOR, ILLEGAL = range(-1, -8, -1)
COMMA, DOT, _NEWLINE, _BACKSLASH = map(ord, ",.\n\\")
_SIMPLE_ESCAPES = frozenset(map(ord, "abfnrtv\\"))
# Go's unicode.IsSpace (Python's str.isspace also takes 0x1C-0x1F).
_GO_SPACES = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028]
) | {0x2029, 0x202F, 0x205F, 0x3000}


class Scanner:
    """Tokens of one filter string, with their positions (containerd's scanner).

    `next` and `peek` give runes; `scan` gives (position, token, text). An
    ILLEGAL token leaves the first problem met in `err`.
    """

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0  # where the current rune starts
        self.ppos = 0  # where the next one starts
        self.value = False  # the next token is a value (after an operator)
        self.err = ""  # the first error met, as containerd keeps it

    def next(self) -> int:
        if self.pos >= len(self.input):
            return EOF
        self.pos = self.ppos
        if self.ppos >= len(self.input):
            return EOF
        rune = ord(self.input[self.ppos])
        self.ppos += 1
        if rune == 0xFFFD or 0xD800 <= rune <= 0xDFFF:  # Go's utf8.RuneError
            self.error("not valid UTF-8")
            return ILLEGAL
        if rune == 0:
            self.error("unexpected NUL character")
            return ILLEGAL
        return rune

    def peek(self) -> int:
        pos, ppos = self.pos, self.ppos
        rune = self.next()
        self.pos, self.ppos = pos, ppos
        return rune

    def scan(self) -> tuple[int, int, str]:
        rune = self.next()
        pos = self.pos
        while rune not in (EOF, ILLEGAL):
            if rune in _QUOTES:
                ok = self.scan_quoted(rune)
                return pos, QUOTED if ok else ILLEGAL, self.input[pos : self.ppos]
            if rune in (COMMA, DOT):
                self.value = False
                return pos, SEPARATOR, self.input[pos : self.ppos]
            if rune in _OPERATOR_RUNES:
                self.scan_while(_OPERATOR_RUNES.__contains__)
                self.value = True
                return pos, OPERATOR, self.input[pos : self.ppos]
            if rune in _GO_SPACES:
                rune = self.next()
                pos = self.pos
                continue
            if self.value:
                self.scan_while(_is_value_rune)
                self.value = False
                return pos, VALUE, self.input[pos : self.ppos]
            if _is_field_rune(rune):
                self.scan_while(_is_field_rune)
                return pos, FIELD, self.input[pos : self.ppos]
            break
        return self.pos, rune, ""

    def scan_while(self, accept: Callable[[int], bool]) -> None:
        while accept(self.peek()):
            self.next()

    def scan_quoted(self, quote: int) -> bool:
        legal = True
        rune = self.next()
        while rune != quote:
            if rune == _NEWLINE or rune < 0:
                self.error("quoted text not terminated")
                return False
            if rune == _BACKSLASH:
                rune, ok = self.scan_escape(quote)
                legal = legal and ok
            else:
                rune = self.next()
        return legal

    def scan_escape(self, quote: int) -> tuple[int, bool]:
        rune = self.next()
        if rune in _SIMPLE_ESCAPES or rune == quote:
            return self.next(), True
        if ord("0") <= rune <= ord("7"):
            return self.scan_digits(rune, 8, 3)
        digits = {ord("x"): 2, ord("u"): 4, ord("U"): 8}.get(rune)
        if digits is not None:
            return self.scan_digits(self.next(), 16, digits)
        self.error("illegal escape sequence")
        return rune, False

    def scan_digits(self, rune: int, base: int, count: int) -> tuple[int, bool]:
        while count > 0 and _digit_value(rune) < base:
            rune = self.next()
            count -= 1
        if count > 0:
            self.error("illegal numeric escape sequence")
            return rune, False
        return rune, True

    def error(self, message: str) -> None:
        if not self.err:
            self.err = message


_QUOTES = frozenset(map(ord, '/|"'))
_OPERATOR_RUNES = frozenset(map(ord, "=!~"))


def _digit_value(rune: int) -> int:
    if rune < 0:
        return 16
    return int(chr(rune), 16) if chr(rune) in "0123456789abcdefABCDEF" else 16


def _is_field_rune(rune: int) -> bool:
    return rune >= 0 and chr(rune) in _FIELD_CHARACTERS


_FIELD_CHARACTERS = frozenset(
    "_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
)


def _is_value_rune(rune: int) -> bool:
    # Go: not a comma or a space, and a letter, mark, number, punctuation or
    # symbol (unicode.IsGraphic without its spaces).
    if rune < 0 or rune == COMMA or rune in _GO_SPACES:
        return False
    return unicodedata.category(chr(rune))[0] in "LMNPS"


# Unquoting (containerd's quote.go: Go's strconv.Unquote, taught / and |).

_ESCAPED = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_HEX = frozenset("0123456789abcdefABCDEF")


def unquote(text: str) -> str:
    """The text a quoted literal stands for; ValueError when it is not one.

    Escapes make bytes, as in Go: `\\xff` alone is not UTF-8 and comes back as a
    lone surrogate (surrogateescape), equal to no text that is.
    """
    if len(text) < 2:
        raise ValueError(text)
    quote, body = text[0], text[1:-1]
    if text[-1] != quote or quote not in "\"'|/" or "\n" in body:
        raise ValueError(text)
    if "\\" not in body and quote not in body:
        return body
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote:
            raise ValueError(text)
        if c != "\\":
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError(text)
        escape, i = body[i + 1], i + 2
        if escape in _ESCAPED:
            out.append(_ESCAPED[escape])
        elif escape in "xuU":
            count = {"x": 2, "u": 4, "U": 8}[escape]
            digits, i = body[i : i + count], i + count
            if len(digits) < count or not set(digits) <= _HEX:
                raise ValueError(text)
            code = int(digits, 16)
            if escape == "x":
                out.append(code)
            elif code > 0x10FFFF:
                raise ValueError(text)
            else:  # Go encodes a surrogate as U+FFFD
                rune = "\ufffd" if 0xD800 <= code <= 0xDFFF else chr(code)
                out += rune.encode()
        elif "0" <= escape <= "7":
            digits, i = body[i : i + 2], i + 2
            if len(digits) < 2 or not set(digits) <= set("01234567"):
                raise ValueError(text)
            code = int(escape + digits, 8)
            if code > 255:
                raise ValueError(text)
            out.append(code)
        elif escape in "'\"|/" and escape == quote:
            out += escape.encode()
        else:
            raise ValueError(text)
    return out.decode("utf-8", "surrogateescape")


# Go's regular expressions, for `~=`.
#
# Go's regular expressions, through RE2, for the `~=` of containerd's filters.
#
# containerd compiles a `~=` value with Go's `regexp`, which is RE2's syntax and
# semantics: linear time in the text whatever the pattern (no backtracking, so
# `(a+)+$` cannot run for ever), leftmost-first matching, `\\w`, `\\d`, `\\s`
# and `\\b` ASCII-only, `$` only at the very end of the text unless `(?m)`,
# Unicode classes (`\\pL`, `\\p{Greek}`), `\\z`, `\\Q...\\E`, flags `(?imsU)`
# and `\\x{61}`. What RE2 has no linear-time way to do is refused: lookarounds,
# backreferences, atomic groups, possessive quantifiers, `\\Z`.
#
# This module is the one place a `~=` value is compiled. It uses the RE2
# library itself (google-re2) with its default options, which are Go's
# `syntax.Perl`, and refuses the two things RE2 takes and Go does not: `\\C`
# (any single byte, which could split a UTF-8 character) and two groups of one
# name.

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


# The parser.

Lookup = Callable[[tuple[str, ...]], str | None]
"""A field's value by its path, or None when the object has no such field."""


class Operator(enum.Enum):
    """How a selector compares a field with its value."""

    PRESENT = "?"
    EQUAL = "=="
    NOT_EQUAL = "!="
    MATCHES = "~="


@dataclass(frozen=True, slots=True)
class Selector:
    """One `fieldpath[operator value]` of a filter."""

    path: tuple[str, ...]
    operator: Operator
    value: str = ""
    pattern: Regexp | None = field(default=None, compare=False, repr=False)

    def matches(self, lookup: Lookup) -> bool:
        """Whether the object behind `lookup` satisfies this selector."""
        found = lookup(self.path)
        if self.operator is Operator.PRESENT:
            return found is not None
        if self.operator is Operator.EQUAL:
            return found is not None and found == self.value
        actual = "" if found is None else found
        if self.operator is Operator.NOT_EQUAL:
            return actual != self.value
        assert self.pattern is not None
        return self.pattern.search(actual)


@dataclass(frozen=True, slots=True)
class Filter:
    """Alternatives (OR), each a conjunction (AND) of selectors.

    An alternative without selectors matches everything.
    """

    alternatives: tuple[tuple[Selector, ...], ...]

    @property
    def matches_all(self) -> bool:
        """True when some alternative has no selectors: nothing is filtered out."""
        return any(not selectors for selectors in self.alternatives)

    def matches(self, lookup: Lookup) -> bool:
        """Whether the object behind `lookup` satisfies any alternative."""
        return any(
            all(selector.matches(lookup) for selector in selectors)
            for selectors in self.alternatives
        )


class InvalidFilter(InvalidArgument):
    """A filter string that does not parse; `position` counts characters from 0."""

    def __init__(self, text: str, position: int, problem: str) -> None:
        super().__init__(
            f"filter {shown(text, 60)}",
            f"{problem} at position {position}: {_marked(text, position)}",
        )
        self.filter = text
        self.position = position
        self.problem = problem


def parse(*texts: str) -> Filter:
    """The filter that matches what any of `texts` matches (all when none given).

    Raises InvalidFilter (an InvalidArgument) naming the first text that does
    not parse, the position where it broke, and why.
    """
    for text in texts:
        if not isinstance(text, str):
            raise InvalidArgument(
                "filters", f"each filter must be a string, not {shown(text)}"
            )
    if not texts:
        return Filter(((),))
    return Filter(tuple(_Parser(text).parse() for text in texts))


# The parser (containerd's parser.go).

_OPERATORS = {op.value: op for op in Operator if op is not Operator.PRESENT}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = Scanner(text)

    def parse(self) -> tuple[Selector, ...]:
        if self.text == "":  # containerd's special case: matches everything
            return ()
        selectors = [self.selector()]
        while True:
            ahead = self.scanner.peek()
            if ahead == COMMA:
                self.scanner.scan()
                selectors.append(self.selector())
            elif ahead == EOF:
                return tuple(selectors)
            else:
                where = self.scanner.ppos
                raise self.error(where, f"unexpected {self.text[where]!r}")

    def selector(self) -> Selector:
        path = self.fieldpath()
        if self.scanner.peek() in (COMMA, EOF):
            return Selector(path, Operator.PRESENT)
        operator = self.operator()
        position, value = self.value(alternative_quotes=operator is Operator.MATCHES)
        if operator is not Operator.MATCHES:
            return Selector(path, operator, value)
        return Selector(path, operator, value, self.compile(position, value))

    def fieldpath(self) -> tuple[str, ...]:
        fields = [self.field()]
        while self.scanner.peek() == DOT:
            self.scanner.scan()
            fields.append(self.field())
        return tuple(fields)

    def field(self) -> str:
        position, token, text = self.scanner.scan()
        if token == FIELD:
            return text
        if token == QUOTED:
            return self.unquote(position, text, alternative_quotes=False)
        if token == ILLEGAL:
            raise self.error(position, self.scanner.err)
        raise self.error(position, "expected a field name or a quoted field")

    def operator(self) -> Operator:
        position, token, text = self.scanner.scan()
        if token == OPERATOR:
            if text in _OPERATORS:
                return _OPERATORS[text]
            raise self.error(position, f"unknown operator {text!r} (use ==, != or ~=)")
        if token == ILLEGAL:
            raise self.error(position, self.scanner.err)
        raise self.error(position, "expected an operator (==, != or ~=)")

    def value(self, *, alternative_quotes: bool) -> tuple[int, str]:
        position, token, text = self.scanner.scan()
        if token in (VALUE, FIELD):
            return position, text
        if token == QUOTED:
            return position, self.unquote(position, text, alternative_quotes)
        if token == ILLEGAL:
            raise self.error(position, self.scanner.err)
        raise self.error(position, "expected a value")

    def unquote(self, position: int, text: str, alternative_quotes: bool) -> str:
        if not alternative_quotes and text[0] != '"':
            raise self.error(position, f"{text[0]}...{text[0]} quotes only a ~= value")
        try:
            return unquote(text)
        except ValueError:
            raise self.error(position, "bad quoted text (quote syntax error)") from None

    def compile(self, position: int, value: str) -> Regexp:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            raise self.error(position, "the regular expression is not valid UTF-8")
        try:
            return Regexp(value)
        except RegexpError as e:
            raise self.error(position, f"invalid regular expression ({e})") from None

    def error(self, position: int, problem: str) -> InvalidFilter:
        return InvalidFilter(self.text, position, problem)


def _marked(text: str, position: int, context: int = 30) -> str:
    """`text` around `position`, the character there between >| and |<."""
    start = max(0, position - context)
    end = position + 1 + context
    before = ("..." if start else "") + text[start:position]
    after = text[position + 1 : end] + ("..." if end < len(text) else "")
    parts = (before, text[position : position + 1], after)
    return "{} >|{}|< {}".format(*(_printable(part) for part in parts)).rstrip()


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
