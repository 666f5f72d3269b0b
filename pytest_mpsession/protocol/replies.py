"""What a board's replies mean: its ``repr`` text as Python values, its tracebacks as
``(exc_type, message)``. Parsing only, never evaluation; no I/O."""

from __future__ import annotations

import ast
import math
import re
from typing import Final

__all__ = ["parse_literal", "parse_traceback"]

_TYPE_LINE = re.compile(r"([A-Za-z_][\w.]*)(?::[ ]?(.*))?\Z", re.S)
_INF: Final = float("inf")


def parse_traceback(text: str) -> tuple[str, str]:
    """``(exc_type, message)`` from a traceback as the board printed it.

    The exception line is the one after the last ``File`` line (the last line for a one-line
    message); MicroPython 1.9 has no ``type.__name__``, so the text is all there is.
    """
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    start = 0
    for i, line in enumerate(lines):
        if line.startswith(("Traceback (most recent call last)", "  File ")):
            start = i + 1
    rest = lines[start:] or lines[-1:]
    m = _TYPE_LINE.match(rest[0])
    if not m:
        return "", "\n".join(rest).strip()
    message = "\n".join([m.group(2) or "", *rest[1:]]).strip()
    return m.group(1), message


def _short(text: str, limit: int = 80) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


_TOKEN = re.compile(
    r"""\s*(?:
    (?P<str>[bB]?(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))
    |(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[jJ]?)
    |(?P<name>[A-Za-z_]\w*)
    |(?P<op>[-+()\[\]{},:])
    )""",
    re.X | re.S,
)
_NAMES: Final[dict[str, object]] = {
    "None": None,
    "True": True,
    "False": False,
    "inf": _INF,
    "nan": math.nan,
    "infj": complex(0, _INF),
    "nanj": complex(0, math.nan),
}
# MicroPython 1.9 and CPython agree on int text; CPython refuses int() of more than 4,300
# digits unless told, so long ones are built from pieces.
_DIGITS: Final = 4000


def _int(text: str) -> int:
    if len(text) <= _DIGITS:
        return int(text)
    value = 0
    for i in range(0, len(text), _DIGITS):
        piece = text[i : i + _DIGITS]
        value = value * 10 ** len(piece) + int(piece)
    return value


def _number(text: str) -> object:
    if text[-1] in "jJ":
        return complex(0, float(text[:-1]))
    if text.isdigit():
        return _int(text)
    return float(text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"unexpected {text[pos : pos + 20]!r}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "end" or (value is not None and tok[1] != value):
            raise ValueError(f"expected {value or 'a value'}, got {tok[1] or 'the end'}")
        self.i += 1
        return tok

    def items(self, close: str) -> list[object]:
        out: list[object] = []
        while self.peek()[1] != close:
            out.append(self.value())
            if self.peek()[1] != close:
                self.take(",")
        self.take(close)
        return out

    def value(self) -> object:
        kind, text = self.take()
        if kind == "str":
            return ast.literal_eval(text)
        if kind == "num":
            return _number(text)
        if kind == "op" and text in "-+":
            operand = self.value()
            if isinstance(operand, bool) or not isinstance(operand, int | float | complex):
                raise ValueError(f"{text} before a non-number")
            return -operand if text == "-" else operand
        if kind == "name":
            if text in _NAMES:
                return _NAMES[text]
            return self.call(text)
        if text == "[":
            return self.items("]")
        if text == "{":
            return self.braces()
        if text == "(":
            return self.parens()
        raise ValueError(f"unexpected {text!r}")

    def call(self, name: str) -> object:
        self.take("(")
        args = self.items(")")
        if name == "bytearray" and not args:
            return bytearray()
        if name == "bytearray" and len(args) == 1 and isinstance(args[0], bytes):
            return bytearray(args[0])
        if name == "set" and not args:
            return set()
        if name == "frozenset" and not args:
            return frozenset()
        if name == "frozenset" and len(args) == 1 and isinstance(args[0], set | list | tuple):
            return frozenset(args[0])
        raise ValueError(f"{name}(...) is not a literal")

    def braces(self) -> object:
        if self.peek()[1] == "}":
            self.take("}")
            return {}
        first = self.value()
        if self.peek()[1] == ":":
            self.take(":")
            pairs = [(first, self.value())]
            while self.peek()[1] == ",":
                self.take(",")
                if self.peek()[1] == "}":
                    break
                key = self.value()
                self.take(":")
                pairs.append((key, self.value()))
            self.take("}")
            return dict(pairs)
        members = [first]
        if self.peek()[1] == ",":
            self.take(",")
            members += self.items("}")
        else:
            self.take("}")
        return set(members)

    def parens(self) -> object:
        if self.peek()[1] == ")":
            self.take(")")
            return ()
        first = self.value()
        nxt = self.peek()[1]
        if nxt in ("+", "-") and isinstance(first, int | float) and not isinstance(first, bool):
            # a complex repr: (1+2j), (-0-1j), (nan+infj)
            self.take()
            imag = self.value()
            self.take(")")
            if not isinstance(imag, complex) or imag.real != 0:
                raise ValueError("not a complex number")
            return first + imag if nxt == "+" else first - imag
        if nxt == ")":
            self.take(")")
            return first  # parentheses around a value
        self.take(",")
        return (first, *self.items(")"))


def parse_literal(text: str) -> object:
    """The Python value of a MicroPython ``repr``: literals only, never evaluated.

    ints (of any size), floats (``inf``, ``-inf``, ``nan`` too), complex, str, bytes,
    ``bytearray(b'..')``, lists, tuples, dicts, sets (``set()``), frozensets, None and
    booleans, nested as deep as the board can print. ValueError for anything else.
    """
    src = text.strip()
    try:
        parser = _Parser(src)
        value = parser.value()
        if parser.peek()[0] != "end":
            raise ValueError(f"more after the value: {parser.peek()[1]!r}")
        return value
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not a literal: {_short(src)} ({exc})") from None
