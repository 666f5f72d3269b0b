"""Exclusive use of a board across processes: a lock file per port, held while it is open.

A device path is already opened exclusively (``TIOCEXCL`` / pyserial's ``exclusive=True``),
but that says nothing about *who* has it, and a network port (``socket://``,
``rfc2217://``) has no such thing at all: two test runs would share one board through
ser2net. So every open port also takes an ``fcntl.flock`` on a file named after the port in
a lock directory (``MP_LOCK_DIR``, default ``<tmp>/pytest-mpsession-locks``), and writes its
pid, host, command and start time into it. A second opener gets :class:`BoardBusyError`::

    board busy: /dev/ttyACM0 is in use by pid 4242 (pytest tests/ on build-3 since 09:31:02);
    wait for that run to end, or give this run another board

The kernel drops a flock when its holder dies, so a killed run never leaves a stale lock.
Across hosts the lock file cannot help; ser2net itself accepts one client per port
(``max-connections: 1``, its default), and the communicator reports its refusal as busy too.

Ports that are private to this process are not locked: ``mpmock://`` (each open is a new
emulated board) and ``loop://``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import socket
import sys
import tempfile
import urllib.parse
from typing import Final

from pytest_mpsession.errors import BoardBusyError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: COM ports are exclusive by themselves
    fcntl = None  # type: ignore[assignment]

__all__ = ["BoardBusyError", "BoardLock", "lock_dir", "lock_key"]

log = logging.getLogger(__name__)

#: Environment variable naming the directory of the lock files.
LOCK_DIR_ENV: Final = "MP_LOCK_DIR"
# Schemes whose "port" exists only inside this process: nothing to share, nothing to lock.
_PRIVATE_SCHEMES: Final = frozenset({"mpmock", "loop"})
_NETWORK_SCHEMES: Final = frozenset({"socket", "rfc2217", "tcp"})
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]+")
_LOOPBACK: Final = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "ip6-localhost"})


def lock_dir() -> str:
    """The directory of the lock files: ``$MP_LOCK_DIR``, else ``<tmp>/pytest-mpsession-locks``."""
    return os.environ.get(LOCK_DIR_ENV) or os.path.join(
        tempfile.gettempdir(), "pytest-mpsession-locks"
    )


def lock_key(port: str) -> str | None:
    """The lock file name of ``port``, or None for a port that needs no lock.

    Two spellings of one board get one key: a device path is resolved through its symlinks
    (``/dev/serial/by-id/...`` and ``/dev/ttyACM0``), a network URL is reduced to its host
    and TCP port (``rfc2217://127.0.0.1:2217?ign_set_control`` and ``socket://localhost:2217``
    are the same ser2net port).
    """
    if "://" not in port:
        path = os.path.realpath(port)
        key = _UNSAFE.sub("_", path).strip("_")
        if path.startswith("/dev/pts/"):
            # A pseudo-terminal never comes back once closed, and its number is soon given
            # to a new one: key it by its creation too, so a holder still waiting for a
            # closed PTY never blocks the next PTY of that number.
            try:
                key += f"-{os.stat(path).st_ctime_ns}"
            except OSError:
                pass
        return key + ".lock"
    parts = urllib.parse.urlsplit(port)
    scheme = parts.scheme.lower()
    if scheme in _PRIVATE_SCHEMES:
        return None
    if scheme in _NETWORK_SCHEMES:
        host = (parts.hostname or "").lower()
        if host in _LOOPBACK:
            host = "127.0.0.1"
        try:
            tcp = parts.port
        except ValueError:
            tcp = None
        return _UNSAFE.sub("_", f"net-{host}-{tcp}") + ".lock"
    # Any other URL (spy://, hwgrep://, a user's handler): keyed by its text, query dropped.
    return _UNSAFE.sub("_", f"{scheme}-{parts.netloc}{parts.path}").strip("_") + ".lock"


def _describe(holder: dict[str, str]) -> str:
    pid = holder.get("pid") or "?"
    bits = [holder[k] for k in ("cmd",) if holder.get(k)]
    if holder.get("host"):
        bits.append(f"on {holder['host']}")
    if holder.get("since"):
        bits.append(f"since {holder['since']}")
    return f"pid {pid}" + (f" ({' '.join(bits)})" if bits else "")


def _read_holder(fd: int) -> dict[str, str]:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    except OSError:
        return {}
    holder: dict[str, str] = {}
    for line in raw.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            holder[key.strip()] = value.strip()
    return holder


def _command_line() -> str:
    prog = sys.argv[0] if sys.argv else ""
    name = os.path.basename(prog) or "python"
    if name == "__main__.py":  # python -m pytest: name the package, not its __main__
        name = os.path.basename(os.path.dirname(prog)) or name
    argv = [name, *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 60 else text[:57] + "..."


class BoardLock:
    """The lock of one port, held from :meth:`acquire` to :meth:`release` (idempotent)."""

    def __init__(self, port: str) -> None:
        """Prepare the lock of ``port``; nothing is taken until :meth:`acquire`."""
        self.port = port
        key = lock_key(port)
        self.path: str | None = os.path.join(lock_dir(), key) if key else None
        self._fd = -1

    @property
    def held(self) -> bool:
        """True between a successful :meth:`acquire` and :meth:`release`."""
        return self._fd >= 0

    def acquire(self) -> None:
        """Take the lock without waiting: :class:`BoardBusyError` if another holder has it.

        A lock directory that cannot be used (read-only, another user's) is logged and
        skipped: the exclusive open of the device still protects a local board.
        """
        if self._fd >= 0 or self.path is None or fcntl is None:
            return
        try:
            directory = os.path.dirname(self.path)
            if not os.path.isdir(directory):
                os.makedirs(directory, exist_ok=True)
                # Shared by every user of the machine, like /tmp itself (sticky).
                with contextlib.suppress(OSError):
                    os.chmod(directory, 0o1777)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            log.warning("board lock for %s not taken (%s): %s", self.port, self.path, exc)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise BoardBusyError(
                f"board busy: {self.port} is in use by {_describe(holder)}; wait for that "
                "run to end, or give this run another board",
                port=self.port,
                holder=holder,
                lock_path=self.path,
            ) from None
        info = (
            f"pid={os.getpid()}\nhost={socket.gethostname()}\ncmd={_command_line()}\n"
            f"since={datetime.datetime.now().strftime('%H:%M:%S')}\nport={self.port}\n"
        ).encode()
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock back (the file stays: removing it would race with a new holder)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock

    def __del__(self) -> None:
        # A holder dropped without release() (a transport never closed) frees the board
        # when it is collected, as pyserial closes a forgotten port.
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            self._fd = -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> BoardLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<BoardLock {self.port} {'held' if self.held else 'free'} at {self.path}>"
