"""A board served on a pseudo-terminal: open ``PtyBoard.path`` with pyserial like a board."""

from __future__ import annotations

import atexit
import os
import pty
import tty
import weakref
from types import TracebackType

from pytest_mpsession.emulator.link import Link
from pytest_mpsession.emulator.options import parse_options
from pytest_mpsession.emulator.profiles import load_profile

__all__ = ["PtyBoard"]

_LIVE: weakref.WeakSet[PtyBoard] = weakref.WeakSet()


class PtyBoard:
    """An emulated board on a pseudo-terminal (``/dev/pts/N``), served by a relay thread.

    ``profile`` names a built-in or user profile (see :mod:`.profiles`); keyword ``options``
    are those of an ``mpmock://`` URL (``seed``, ``baudrate``, ``latency_ms``, ``garbage``,
    ``drop``, ``disconnect``, ``disconnect_after``, ``reset``, ``hang``, ``flash``,
    ``profiles``).  The constructor returns once the board has booted.  ``close()`` (or the
    end of a ``with`` block, or interpreter exit) ends the engine process; if this process is
    killed the kernel ends it too.

    A PTY cannot vanish like a USB device: when the board's link "drops" (a hard reset, the
    ``disconnect`` faults) the path stays and only the bytes in flight are lost.
    """

    def __init__(self, profile: str = "generic", **options: object) -> None:
        opts = parse_options(options)
        prof = load_profile(profile, opts.profiles)
        master, slave = pty.openpty()
        # Raw until a client sets its own mode: with ECHO on, the line discipline would send
        # the board's own output back to it as input.
        tty.setraw(slave)
        self._master = master
        self._slave = slave  # held open so the master never sees EIO between clients
        self.path: str = os.ttyname(slave)
        self.profile = prof
        try:
            self.link = Link(prof, opts, on_drop=self._link_dropped)
            self.link.attach(master)
            self.link.start()
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        _LIVE.add(self)

    def _link_dropped(self) -> None:
        # A PTY cannot vanish: the link comes back at once, at the same path.
        if self._master >= 0:
            self.link.attach(self._master)

    @property
    def engine_pid(self) -> int | None:
        """The process id of the MicroPython engine running the board now (None between
        engines, or once closed): a reset starts a new engine, so read it again after one.
        Tests use it to crash or stop the board's interpreter from outside."""
        return self.link.engine_pid

    def hard_reset(self) -> None:
        """Pulse the board's reset line (a PTY has no RTS to do it from the host side)."""
        self.link.hard_reset()

    def close(self) -> None:
        """End the board and its engine process; the path stops working."""
        if self._master < 0:
            return
        self.link.close()
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1
        _LIVE.discard(self)

    def __enter__(self) -> PtyBoard:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PtyBoard {self.profile.name} on {self.path}>"


@atexit.register
def _close_all() -> None:
    for board in list(_LIVE):
        board.close()
