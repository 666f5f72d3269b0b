"""Host values written as MicroPython source literals (the way arguments reach the board).

Only values the board can rebuild from source text are accepted: ``None``, ``bool``, ``int``,
``float`` (``inf``/``nan`` included, written ``float('inf')`` because MicroPython's repr of
them is not a literal), ``complex``, ``str``, ``bytes``, ``bytearray`` and lists, tuples, dicts,
sets and frozensets of them. Results come back through the communicator's ``parse_literal``.
"""

from __future__ import annotations

import math

__all__ = ["to_board_literal"]

_MAX_DEPTH = 100


def to_board_literal(value: object) -> str:
    """MicroPython source text that evaluates to ``value`` on the board.

    Raises ``TypeError`` for a value the board cannot rebuild, naming its type, and
    ``ValueError`` for a container that contains itself.
    """
    return _lit(value, 0, set())


def _float(value: float) -> str:
    if math.isnan(value):
        return "float('nan')"
    if math.isinf(value):
        return "float('inf')" if value > 0 else "float('-inf')"
    return repr(value)


def _lit(value: object, depth: int, seen: set[int]) -> str:
    # Exact type checks first: bool is an int, and subclasses of str/int may repr oddly.
    # The base types' own __repr__, so subclasses (IntEnum, str enums) send their plain value.
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, str):
        return str.__repr__(value)
    if isinstance(value, bytes):
        return bytes.__repr__(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, complex):
        return f"complex({_float(value.real)},{_float(value.imag)})"
    if isinstance(value, bytearray):
        return f"bytearray({bytes(value)!r})"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        if id(value) in seen or depth > _MAX_DEPTH:
            raise ValueError(
                "cannot send a container that contains itself (or is nested deeper than "
                f"{_MAX_DEPTH}) to the board; pass a plain tree of values"
            )
        seen.add(id(value))
        try:
            return _container(value, depth + 1, seen)
        finally:
            seen.discard(id(value))
    raise TypeError(
        f"cannot send a {type(value).__name__} to the board: only None, bool, int, float, "
        "complex, str, bytes, bytearray and lists, tuples, dicts and sets of them can be "
        "passed (convert it to one of these first)"
    )


def _container(
    value: list[object]
    | tuple[object, ...]
    | dict[object, object]
    | set[object]
    | frozenset[object],
    depth: int,
    seen: set[int],
) -> str:
    if isinstance(value, dict):
        items = ",".join(f"{_lit(k, depth, seen)}:{_lit(v, depth, seen)}" for k, v in value.items())
        return "{" + items + "}"
    inner = ",".join(_lit(v, depth, seen) for v in value)
    if isinstance(value, list):
        return "[" + inner + "]"
    if isinstance(value, tuple):
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, frozenset):
        return "frozenset([" + inner + "])"
    return "{" + inner + "}" if value else "set()"
