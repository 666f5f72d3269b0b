"""The ``mpmock://`` pyserial port: an emulated board in this process.

URL format: ``mpmock://[PROFILE][?option=value[&option=value...]]``

PROFILE defaults to ``generic``; options are those of :mod:`.options` (``seed``,
``baudrate``, ``latency_ms``, ``garbage``, ``drop``, ``disconnect``, ``disconnect_after``,
``reset``, ``hang``, ``flash``, ``profiles``).  Opening the port boots the board; closing it
ends the board, except after the link dropped (a hard reset of a USB board, a
``disconnect`` fault) or while the board hangs (``hang``): then the board lives on and
``open()`` reconnects to it, as a client reopens a board's port after it re-enumerated (a hung
board is hard reset by that).  Boards left that way end with the Serial object or at exit.
The modem lines drive the board's reset (EN) line as on a typical dev board, both ways
it is wired:

- the usual two-transistor auto-reset circuit (ESP32/ESP8266 boards): EN is held low while
  RTS is asserted and DTR is not, so ``dtr=False, rts=True`` then both asserted again is a
  hard reset, on EN's rising edge (what ``Transport.pulse_reset`` and esptool do);
- RTS wired straight to EN: ``rts`` True then False is a hard reset too, unless that RTS
  assertion already reset the board through the circuit (one pulse, one reset).

Opening the port never resets the board: the levels set before ``open()`` are taken as they
are, and only later changes move the reset line.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import select
import socket
import struct
import termios
import threading
import time
import urllib.parse
import weakref
from typing import TYPE_CHECKING, Any

from serial import PortNotOpenError, SerialBase, SerialException, SerialTimeoutException

from pytest_mpsession.emulator.engine import EmulatorError
from pytest_mpsession.emulator.link import Link
from pytest_mpsession.emulator.options import parse_options
from pytest_mpsession.emulator.profiles import Profile, load_profile

__all__ = ["Serial", "parse_url"]

_LIVE: weakref.WeakSet[Serial] = weakref.WeakSet()

_FORM = "expected mpmock://[PROFILE][?option=value&...]"


def parse_url(url: str) -> tuple[Profile, dict[str, str]]:
    """Split an ``mpmock://`` URL into its profile and raw options (checked, not converted)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "mpmock":
        raise EmulatorError(f"{url!r} is not an mpmock:// URL; {_FORM}")
    if parts.path not in ("", "/") or parts.fragment:
        raise EmulatorError(f"{url!r}: unexpected path or fragment; {_FORM}")
    raw: dict[str, str] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if key in raw:
            raise EmulatorError(f"{url!r}: option {key!r} given twice")
        raw[key] = value
    opts = parse_options(dict(raw))  # unknown/bad options fail here, listing the valid ones
    profile = load_profile(parts.netloc or "generic", opts.profiles)
    return profile, raw


if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class Serial(SerialBase):
    """A pyserial port onto an emulated board (see the module docstring for the URL)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._link: Link | None = None
        self._sock: socket.socket | None = None
        self._board_end: socket.socket | None = None
        self._dropped = threading.Event()
        # the relay thread drops the link while this one may be closing or reopening
        self._ends_lock = threading.Lock()
        # the levels the board's reset circuit last saw (taken at open, then each change)
        self._line_rts = False
        self._line_dtr = False
        # an RTS assertion that may still reset the board when released (RTS wired to EN)
        self._rts_armed = False
        self._rts_explicit = False  # RTS was asserted by an assignment since open
        super().__init__(*args, **kwargs)

    # -- open / close ------------------------------------------------------------------

    def open(self) -> None:
        """Boot the board (or reconnect to it after its link dropped)."""
        if self.port is None:
            raise SerialException("Port must be configured before it can be used.")
        if self.is_open:
            raise SerialException("Port is already open.")
        try:
            profile, raw = parse_url(self.port)
            if self._link is None:
                self._link = Link(profile, parse_options(dict(raw)), on_drop=self._on_drop)
                self._connect()
                self._link.start()
                _LIVE.add(self)
            else:
                self._connect()
        except EmulatorError as exc:
            self._close_link()
            raise SerialException(str(exc)) from exc
        # the levels set before open are where the lines start: opening never resets
        self._line_rts, self._line_dtr = bool(self.rts), bool(self.dtr)
        self._rts_armed = False
        self._rts_explicit = False
        self.is_open = True

    def _connect(self) -> None:
        assert self._link is not None
        a, b = socket.socketpair()
        a.setblocking(False)
        with self._ends_lock:
            self._sock, self._board_end = a, b
            self._dropped.clear()
            self._link.attach(b.fileno())
            self._link.set_pull(True)

    def _on_drop(self) -> None:
        # relay thread: the link went down like a USB device's; reads and writes now fail
        with self._ends_lock:
            if self._board_end is not None:
                self._board_end.close()
                self._board_end = None
            self._dropped.set()

    def close(self) -> None:
        """Close the port; the board ends with it unless its link had dropped."""
        with self._ends_lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            dropped = self._dropped.is_set()
        if self._link is not None:
            # after a drop the client reopens to reconnect; a hung board is reset by the
            # reopen (it re-enumerates): in both cases the same board must still be there
            if dropped or self._link.hung:
                self._link.detach()
                with self._ends_lock:
                    if self._board_end is not None:
                        self._board_end.close()
                        self._board_end = None
            else:
                self._close_link()
        self.is_open = False

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
        with self._ends_lock:
            if self._board_end is not None:
                self._board_end.close()
                self._board_end = None
            if self._sock is not None and not self.is_open:
                self._sock.close()  # a board that failed to start: the host end too
                self._sock = None

    def __del__(self) -> None:
        try:
            self._close_link()
        except Exception:
            pass

    @property
    def link(self) -> Link | None:
        """The emulated board behind this port (for tests: stats, hard_reset)."""
        return self._link

    def from_url(self, url: str) -> None:
        """Check ``url`` (pyserial's hook)."""
        try:
            parse_url(url)
        except EmulatorError as exc:
            raise SerialException(str(exc)) from exc

    def _reconfigure_port(self, force_update: bool = False) -> None:
        # the host-side baud rate is not the link's: throttling is the URL's baudrate option
        pass

    # -- data ----------------------------------------------------------------------------

    def _check(self) -> socket.socket:
        if not self.is_open or self._sock is None:
            raise PortNotOpenError()
        return self._sock

    def _lost(self) -> SerialException:
        return SerialException(
            "device reports readiness to read but returned no data "
            "(device disconnected or multiple access on port?)"
        )

    @property
    def in_waiting(self) -> int:
        """Bytes received and not read yet."""
        sock = self._check()
        if self._link is not None:
            self._link.pump()
        buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        n: int = struct.unpack("i", buf)[0]
        if n == 0 and self._dropped.is_set():
            raise self._lost()
        return n

    def read(self, size: int = 1) -> bytes:
        """Read up to ``size`` bytes, blocking as pyserial does (``timeout``)."""
        sock = self._check()
        out = bytearray()
        timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(out) < size:
            try:
                chunk = sock.recv(size - len(out))
            except BlockingIOError:
                chunk = None
            except ConnectionResetError:
                chunk = b""  # the board's end went away with bytes unread: the link dropped
            except OSError as exc:
                raise SerialException(f"read failed: {exc}") from exc
            if chunk == b"":
                if out:
                    break
                raise self._lost()
            if chunk:
                out += chunk
                continue
            if deadline is None:
                wait = None
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
            # wait for the board's answer here, and take it from the engine in this thread
            # (a hop through the relay thread per chunk would cost a thread switch each)
            link = self._link
            efd = link.engine_fd if link is not None else -1
            try:
                sfd = sock.fileno()
                r, _, _ = select.select([sfd] if efd < 0 else [sfd, efd], [], [], wait)
            except OSError:
                r = []  # the engine was replaced meanwhile: look again
            if link is not None and efd >= 0 and efd in r:
                link.pump()
        return bytes(out)

    def write(self, b: ReadableBuffer, /) -> int:
        """Send ``b`` to the board."""
        sock = self._check()
        if self._dropped.is_set():
            raise SerialException("write failed: [Errno 5] Input/output error (board gone)")
        data = bytes(b)
        if self._link is not None:
            self._link.feed(data)  # straight into the link, in this thread
            return len(data)
        view = memoryview(data)
        wt = self.write_timeout
        deadline = None if wt is None else time.monotonic() + wt
        sent = 0
        while sent < len(view):
            try:
                sent += sock.send(view[sent:])
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET):
                    raise SerialException(f"write failed: {exc}") from exc
                raise
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                raise SerialTimeoutException("Write timeout")
            select.select([], [sock], [], wait)
        return sent

    def flush(self) -> None:
        """Nothing is buffered on this side."""

    def reset_input_buffer(self) -> None:
        """Discard what was received and not read."""
        sock = self._check()
        if self._link is not None:
            self._link.pump()
        while True:
            try:
                if not sock.recv(65536):
                    return
            except (BlockingIOError, OSError):
                return

    def reset_output_buffer(self) -> None:
        """Nothing is buffered on this side."""

    def fileno(self) -> int:
        """A descriptor that is readable when the board sent something."""
        return self._check().fileno()

    # -- modem lines -----------------------------------------------------------------------

    @staticmethod
    def _en_low(rts: bool, dtr: bool) -> bool:
        # two-transistor auto-reset circuit: EN is pulled low only by RTS asserted with DTR
        # released (both asserted, or both released, leave EN high)
        return rts and not dtr

    def _update_lines(self, rts_set: bool = False) -> None:
        if not self.is_open or self._link is None:
            return
        rts, dtr = bool(self.rts), bool(self.dtr)
        was_low = self._en_low(self._line_rts, self._line_dtr)
        rts_fell = self._line_rts and not rts
        if rts_set and rts and (not self._line_rts or not self._rts_explicit):
            # an assertion of RTS (the first one since open counts even when the port opened
            # with RTS asserted): its release will be a reset pulse if wired to EN directly
            self._rts_armed = True
            self._rts_explicit = True
        self._line_rts, self._line_dtr = rts, dtr
        if was_low and not self._en_low(rts, dtr):
            # EN rises: the board boots (the RTS assertion that held it is used up)
            self._rts_armed = False
            self._link.hard_reset()
        elif rts_fell and self._rts_armed:
            # RTS wired straight to EN: its release is the end of the reset pulse
            self._rts_armed = False
            self._link.hard_reset()

    def _update_rts_state(self) -> None:
        self._update_lines(rts_set=True)

    def _update_dtr_state(self) -> None:
        self._update_lines()

    def _update_break_state(self) -> None:
        pass

    @property
    def cts(self) -> bool:
        """Always clear to send."""
        return True

    @property
    def dsr(self) -> bool:
        """The board is there."""
        return True

    @property
    def ri(self) -> bool:
        """No ring indicator."""
        return False

    @property
    def cd(self) -> bool:
        """Carrier detect: the board is there."""
        return True


@atexit.register
def _close_all() -> None:
    for port in list(_LIVE):
        port._close_link()
