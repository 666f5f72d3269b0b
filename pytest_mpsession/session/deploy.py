"""Host functions turned into board source for ``session.call`` (no board I/O here).

A function's source is taken with ``inspect.getsourcelines`` and dedented (so a function
defined inside a test or a class deploys too); decorator lines are blanked rather than
removed, so board line ``n`` is still host line ``first_line + n - 1`` and tracebacks map back
exactly. The result is cached per function object (weakly) and recomputed when the function's
code object changes, so repeated calls cost no source reading.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
import threading
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from pytest_mpsession.session.tracebacks import HostSource

__all__ = ["MethodDeploymentInfo", "Prepared", "prepare"]


@dataclass(frozen=True)
class MethodDeploymentInfo:
    """A function deployed on the board by a session.

    ``signature`` is its host identity and parameters (``"tests.test_x.blink(pin, n=3)"``),
    ``hash`` the first 16 hex digits of the SHA-256 of the source sent, ``size`` that source's
    length in bytes, ``deployed_at`` when it was sent (UTC).
    """

    signature: str
    hash: str
    size: int
    deployed_at: datetime


@dataclass(frozen=True)
class Prepared:
    """A host function ready to deploy: its board ``name``, the ``source`` text to exec in the
    session's namespace, and where that source lives on the host (``host``)."""

    name: str
    signature: str
    source: str
    hash: str
    size: int
    host: HostSource
    code: types.CodeType = field(repr=False)


_cache: weakref.WeakKeyDictionary[Callable[..., object], Prepared] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def prepare(func: Callable[..., object]) -> Prepared:
    """The deployable form of ``func``; ``TypeError`` naming the problem when it has none
    (not a ``def`` function, no source available, or closure variables the board lacks)."""
    target = inspect.unwrap(func)
    if not isinstance(target, types.FunctionType):
        raise TypeError(
            f"session.call needs a plain function defined with def, not {type(func).__name__} "
            f"{func!r}: wrap the call in a def"
        )
    with _cache_lock:
        hit = _cache.get(target)
    if hit is not None and hit.code is target.__code__:
        return hit
    prepared = _prepare(target)
    with _cache_lock:
        _cache[target] = prepared
    return prepared


def _parameters(func: types.FunctionType) -> str:
    # Resolve string annotations (``from __future__ import annotations``) when possible, so
    # the signature reads as written.
    try:
        return str(inspect.signature(func, eval_str=True))
    except Exception:
        try:
            return str(inspect.signature(func))
        except (TypeError, ValueError):
            return "(...)"


def _prepare(func: types.FunctionType) -> Prepared:
    name = func.__name__
    if name == "<lambda>":
        raise TypeError("session.call cannot deploy a lambda: define the function with def")
    if func.__code__.co_freevars:
        names = ", ".join(func.__code__.co_freevars)
        raise TypeError(
            f"session.call cannot deploy {func.__qualname__}: it uses variables of an enclosing "
            f"function ({names}) that do not exist on the board; pass them as arguments"
        )
    try:
        lines, first_line = inspect.getsourcelines(func)
    except (OSError, TypeError) as exc:
        raise TypeError(
            f"session.call cannot deploy {func.__qualname__}: its source is not available "
            f"({exc}); define it in a .py file"
        ) from None
    source = textwrap.dedent("".join(lines))
    source_lines = source.splitlines()
    tree = ast.parse(source)
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise TypeError(
            f"session.call cannot deploy {func.__qualname__}: no def found in its source"
        )
    # Decorators run on the host only (pytest marks, functools.wraps, ...): blank their lines
    # so the numbering of the rest stays that of the host file.
    for i in range(node.lineno - 1):
        source_lines[i] = ""
    text = "\n".join(source_lines) + "\n"
    data = text.encode()
    signature = f"{func.__module__}.{func.__qualname__}{_parameters(func)}"
    host_file = inspect.getsourcefile(func) or func.__code__.co_filename
    return Prepared(
        name=name,
        signature=signature,
        source=text,
        hash=hashlib.sha256(data).hexdigest()[:16],
        size=len(data),
        host=HostSource(host_file, first_line, tuple(lines)),
        code=func.__code__,
    )
