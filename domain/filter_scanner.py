"""The scanner and unquoting of containerd's filter language (domain/filters.py).

Ports of containerd's pkg/filters/scanner.go and quote.go, over characters
instead of bytes. Like Go's, the scanner hands out runes as integers and
tokens as negative ones; the parser in `filters` drives it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

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
