"""The expected output of an output test: its ``.exp`` file, or CPython's output.

Where a file has no ``NAME.py.exp``, what CPython prints running it is expected, as
run-tests.py does it: ``python3 -BS FILE`` from the file's folder, stderr with stdout,
``PYTHONIOENCODING=utf-8``, and ``CPYTHON3 CRASH:`` before the output when CPython exits with
an error. CPython is ``$MICROPY_CPYTHON3`` (run-tests.py's variable) or the running Python.

The output is kept in pytest's cache under a key made of the file's content and CPython's
version, so a second run starts no CPython (the cache is shared by pytest-xdist workers).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

__all__ = ["CPYTHON_TIMEOUT", "ExpectedError", "cpython_output", "expected_file", "read_expected"]

#: seconds CPython may take for one file (run-tests.py waits without limit)
CPYTHON_TIMEOUT = 60.0
_CACHE_PREFIX = "mpsession/cpython/"
_memo: dict[str, bytes] = {}
_lock = threading.Lock()


class ExpectedError(Exception):
    """The expected output cannot be had (an unreadable ``.exp``, CPython missing)."""


def expected_file(path: Path, micropython_tree: bool) -> Path | None:
    """The ``.exp`` file of ``path`` (run-tests.py prefers ``NAME.py.bytecode.exp`` in its
    own tree), or None."""
    candidates = [Path(str(path) + ".exp")]
    if micropython_tree:
        candidates.insert(0, Path(str(path) + ".bytecode.exp"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def read_expected(exp: Path) -> bytes:
    """The bytes of ``exp``; :class:`ExpectedError` when it cannot be read or is not UTF-8
    (an expected output is text: a board's output is compared with it as UTF-8)."""
    try:
        data = exp.read_bytes()
    except OSError as exc:
        raise ExpectedError(f"cannot read {exp.name}: {exc.strerror or exc}") from None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ExpectedError(
            f"{exp.name} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}): "
            "save it as UTF-8"
        ) from None
    return data


def _cpython() -> list[str]:
    exe = os.environ.get("MICROPY_CPYTHON3") or sys.executable
    return [exe, "-BS"]


def _version(exe: str) -> str:
    """What names this CPython in the cache key, without starting it: the running Python's
    version, or another executable's real path, size and time of change."""
    if exe == sys.executable:
        return sys.version
    found = shutil.which(exe) or exe
    try:
        real = os.path.realpath(found)
        st = os.stat(real)
    except OSError as exc:
        raise ExpectedError(
            f"cannot run CPython {exe!r} (MICROPY_CPYTHON3) for the expected output: "
            f"{exc.strerror or exc}"
        ) from None
    return f"{real} {st.st_size} {st.st_mtime_ns}"


def cache_key(source: bytes) -> str:
    """The cache key of CPython's output for a file with content ``source``."""
    cmd = _cpython()
    digest = hashlib.sha256()
    digest.update(source)
    digest.update(b"\0" + _version(cmd[0]).encode() + b"\0" + " ".join(cmd[1:]).encode())
    return _CACHE_PREFIX + digest.hexdigest()[:32]


def cpython_output(path: Path, source: bytes, cache: Any | None) -> tuple[bytes, bool]:
    """(CPython's output for ``path``, True when it came from the cache)."""
    key = cache_key(source)
    with _lock:
        memo = _memo.get(key)
    if memo is not None:
        return memo, True
    if cache is not None:
        stored = cache.get(key, None)
        if isinstance(stored, str):
            try:
                data = base64.b64decode(stored.encode("ascii"), validate=True)
            except ValueError:
                data = None
            if data is not None:
                with _lock:
                    _memo[key] = data
                return data, True
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    try:
        proc = subprocess.run(
            [*_cpython(), str(path.resolve())],
            cwd=str(path.parent), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            timeout=CPYTHON_TIMEOUT, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise ExpectedError(
            f"CPython did not finish {path.name} within {CPYTHON_TIMEOUT:g} s: give the file "
            "an .exp with its expected output"
        ) from None
    except OSError as exc:
        raise ExpectedError(f"cannot run CPython for the expected output: {exc}") from None
    data = proc.stdout if proc.returncode == 0 else b"CPYTHON3 CRASH:\n" + proc.stdout
    with _lock:
        _memo[key] = data
    if cache is not None:
        cache.set(key, base64.b64encode(data).decode("ascii"))
    return data, False
