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
`imageledger.domain.regexp`), searched for anywhere in the field, compiled
when the filter is parsed: a value that is not one is an InvalidFilter at the
value's position, where containerd would match nothing.

Positions in errors count characters from 0. The rest follows containerd, even
where it surprises: whitespace may come around an operator and before a field,
but not before a comma or at the end; `\\d` inside /.../ is an illegal escape
(write it unquoted, or as \\\\d); a literal U+FFFD is refused like invalid UTF-8.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from imageledger.domain.errors import InvalidArgument, shown
from imageledger.domain.filter_scanner import (
    COMMA,
    DOT,
    EOF,
    FIELD,
    ILLEGAL,
    OPERATOR,
    QUOTED,
    VALUE,
    Scanner,
    unquote,
)
from imageledger.domain.regexp import Regexp, RegexpError

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
