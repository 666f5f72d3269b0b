"""The serial link to one board, through pyserial.

- Any pyserial port: a device path (``/dev/ttyACM0``, ``COM3``) or URL (``socket://``,
  ``rfc2217://``, ``loop://``, ``mpmock://``), opened with ``serial_for_url``.
- Opening never resets the board: DTR and RTS get their values *before* the port opens and
  are never toggled afterwards (ESP32 dev boards wire them to EN and IO0).
- Device paths are opened exclusively, so two test runs can never share one board; every
  port a board can be shared through (device paths, ``socket://``, ``rfc2217://``) also
  takes a lock file naming its holder (:mod:`pytest_mpsession.boardlock`), so a second run
  gets a one-line "board busy: PORT is in use by pid N (...)" error.
- Reads block until bytes arrive or a ``time.monotonic()`` deadline passes: no polling.
- Every pyserial or OS error leaves this module as a one-line
  :class:`~pytest_mpsession.errors.DeviceConnectionError` that names the port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import time
import warnings
from collections.abc import Callable
from typing import Any

import serial

from pytest_mpsession.boardlock import BoardLock
from pytest_mpsession.errors import DeviceConnectionError

__all__ = ["Transport", "set_reset_driver"]

# Reset pulse width: long enough for an ESP32's EN RC network to discharge.
_RESET_PULSE_S = 0.1
# Waits between attempts to reopen a port that vanished (a USB board re-enumerating).
_REOPEN_BACKOFF_S = (0.02, 0.05, 0.1, 0.2, 0.5)
_READ_SIZE = 65536

#: boards that something other than their modem lines resets (a labgrid place's power
#: switch): port -> a function that resets the board and says whether it did
_RESET_DRIVERS: dict[str, Callable[[], bool]] = {}


def set_reset_driver(port: str, driver: Callable[[], bool] | None) -> None:
    """Make ``driver()`` the hard reset of the board at ``port`` (what
    :meth:`Transport.pulse_reset` does there); ``None`` goes back to the modem lines."""
    if driver is None:
        _RESET_DRIVERS.pop(port, None)
    else:
        _RESET_DRIVERS[port] = driver


_PosixSerial: type[Any] | None
try:  # the posix Serial class, whose file descriptor we read directly (see read_some)
    from serial.serialposix import Serial as _PosixSerialClass

    _PosixSerial = _PosixSerialClass
except ImportError:  # pragma: no cover - Windows
    _PosixSerial = None


def _open_quietly(ser: Any) -> None:
    """``ser.open()``, without the DeprecationWarnings of pyserial's RFC 2217 client (it
    starts its reader thread with ``setDaemon``/``setName``), which ``-W error`` turns into
    failures."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"set(Daemon|Name)\(\) is deprecated", DeprecationWarning)
        ser.open()


def _close_serial(ser: Any) -> None:
    """``ser.close()``, and then its socket's for ``socket://`` and ``rfc2217://`` ports:
    pyserial shuts the socket down and closes it in one ``try``, so when the peer already
    reset the connection (a ser2net restarted, an emulator gone) the shutdown fails with
    ENOTCONN, the close is skipped, and the socket is left to the garbage collector (a
    ResourceWarning, an error under ``-W error``)."""
    sock = getattr(ser, "_socket", None)
    try:
        ser.close()
    finally:
        if sock is not None and hasattr(sock, "close"):
            with contextlib.suppress(OSError):
                sock.close()


def _reason(exc: BaseException) -> str:
    """What went wrong, in words a user can act on."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOENT or "No such file" in text or "FileNotFoundError" in text:
        return (
            "no such port (is the board plugged in? "
            "`python -m serial.tools.list_ports` lists the ports)"
        )
    if code in (errno.EAGAIN, errno.EBUSY) or "exclusively lock" in text or "busy" in text.lower():
        return (
            "the port is busy: another program (or another test run) has it open; "
            "close it, or give each worker its own board"
        )
    if code == errno.EACCES or "ermission denied" in text:
        return "permission denied (on Linux, add yourself to the 'dialout' group)"
    if code == errno.ENOTTY or "Inappropriate ioctl" in text:
        return "not a serial port (give the board's device, e.g. /dev/ttyACM0, or a URL)"
    if code in (errno.EIO, errno.ENXIO, errno.ENODEV):
        return "the device disconnected"
    if code in (errno.EPIPE, errno.ECONNRESET) or "Broken pipe" in text:
        return (
            "the server closed the connection at once (a ser2net port takes one client "
            "at a time: another run, maybe on another host, is using this board)"
        )
    if code == errno.ECONNREFUSED or "Connection refused" in text:
        return (
            "connection refused (is ser2net, or the emulator's --tcp server, running on "
            "that host and port?)"
        )
    # pyserial prefixes "[Errno N] could not open port X:"; keep only the last clause.
    return " ".join(text.split()) or type(exc).__name__


class Transport:
    """An open serial link to one board: bytes out, bytes in with deadlines."""

    def __init__(
        self,
        port: str,
        ser: serial.SerialBase,
        *,
        baudrate: int,
        timeout: float,
        exclusive: bool,
        dtr: bool,
        rts: bool,
        lock: BoardLock | None = None,
    ) -> None:
        """Use :meth:`open`; this wraps an already open pyserial object (and the board lock
        taken for it, released by :meth:`close`)."""
        self.port = port
        self.baudrate = baudrate
        self.timeout = timeout
        self._exclusive = exclusive
        self._dtr = dtr
        self._rts = rts
        self._ser = ser
        self._fd = self._posix_fd(ser)
        self._lock = lock
        self._closed = False

    # -- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        port: str,
        *,
        baudrate: int = 115200,
        timeout: float = 10.0,
        exclusive: bool = True,
        dtr: bool = True,
        rts: bool = True,
    ) -> Transport:
        """Open ``port`` without resetting the board.

        ``timeout`` bounds each write. ``dtr`` / ``rts`` are the line levels the port opens
        with and keeps (both asserted is what the OS does on open, so nothing toggles).
        ``exclusive`` also takes the board's lock file for as long as the port is open
        (:class:`~pytest_mpsession.boardlock.BoardBusyError` when another run holds it).
        Raises DeviceConnectionError naming the port.
        """
        lock: BoardLock | None = None
        if exclusive and isinstance(port, str) and port:
            lock = BoardLock(port)
            lock.acquire()
        try:
            ser = cls._open_serial(port, baudrate, timeout, exclusive, dtr, rts)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        return cls(
            port,
            ser,
            baudrate=baudrate,
            timeout=timeout,
            exclusive=exclusive,
            dtr=dtr,
            rts=rts,
            lock=lock,
        )

    @staticmethod
    def _open_serial(
        port: str, baudrate: int, timeout: float, exclusive: bool, dtr: bool, rts: bool
    ) -> serial.SerialBase:
        if not isinstance(port, str) or not port:
            raise DeviceConnectionError(
                f"invalid port {port!r}: give a device path (/dev/ttyACM0, COM3) or a URL",
                port=str(port),
            )
        # pyserial's RFC 2217 client refuses a write timeout (NotImplementedError); its
        # writes go to a TCP socket, which the kernel buffers.
        rfc2217 = port.lower().startswith("rfc2217://")
        ser: Any = None
        try:
            ser = serial.serial_for_url(
                port,
                do_not_open=True,
                baudrate=baudrate,
                write_timeout=None if rfc2217 else timeout,
            )
            # Levels set while closed are applied by open() itself: no edge on the lines.
            ser.dtr = dtr
            ser.rts = rts
            if _PosixSerial is not None and isinstance(ser, _PosixSerial) and exclusive:
                ser.exclusive = True  # flock(): a second opener fails instead of sharing
            _open_quietly(ser)
        except (serial.SerialException, OSError, ValueError, NotImplementedError) as exc:
            if ser is not None:
                with contextlib.suppress(serial.SerialException, OSError, ValueError):
                    _close_serial(ser)  # a half-open RFC 2217 client holds its socket
            raise DeviceConnectionError(f"cannot open {port}: {_reason(exc)}", port=port) from None
        result: serial.SerialBase = ser
        return result

    @staticmethod
    def _posix_fd(ser: serial.SerialBase) -> int | None:
        # A real posix port: read its descriptor with select() + os.read(). pyserial's own
        # read() would need a tcsetattr() for every new timeout.
        if _PosixSerial is not None and isinstance(ser, _PosixSerial):
            fd = ser.fd
            return fd if isinstance(fd, int) else None
        return None

    def _lost(self, exc: BaseException, doing: str) -> DeviceConnectionError:
        return DeviceConnectionError(f"{self.port}: {doing} failed: {_reason(exc)}", port=self.port)

    # -- bytes ------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (blocks at most ``timeout`` when the board does not read)."""
        if not data:
            return
        fd = self._fd
        try:
            if fd is None:
                self._ser.write(data)
                return
            view = memoryview(data)
            deadline = time.monotonic() + self.timeout
            while view:
                try:
                    n = os.write(fd, view)
                    view = view[n:]
                    continue
                except BlockingIOError:
                    pass
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([], [fd], [], remaining)[1]:
                    raise DeviceConnectionError(
                        f"{self.port}: write timed out after {self.timeout:g} s "
                        "(the board does not read)",
                        port=self.port,
                    )
        except DeviceConnectionError:
            raise
        except serial.SerialTimeoutException:
            raise DeviceConnectionError(
                f"{self.port}: write timed out after {self.timeout:g} s (the board does not read)",
                port=self.port,
            ) from None
        except (serial.SerialException, OSError, ValueError, TypeError) as exc:
            raise self._lost(exc, "write") from None

    def read_some(self, deadline: float) -> bytes:
        """Block until at least one byte is there (return all there is) or the
        ``time.monotonic()`` ``deadline`` passes (return ``b""``)."""
        fd = self._fd
        try:
            if fd is None:
                return self._read_generic(deadline)
            while True:
                remaining = max(0.0, deadline - time.monotonic())
                if select.select([fd], [], [], remaining)[0]:
                    # pyserial sets VMIN=0: readable but empty means the device is gone.
                    data = os.read(fd, _READ_SIZE)
                    if not data:
                        raise DeviceConnectionError(
                            f"{self.port}: the device disconnected", port=self.port
                        )
                    return data
                if remaining <= 0:
                    return b""
        except DeviceConnectionError:
            raise
        except (serial.SerialException, OSError, ValueError, TypeError) as exc:
            raise self._lost(exc, "read") from None

    def _read_generic(self, deadline: float) -> bytes:
        ser: Any = self._ser
        waiting = ser.in_waiting
        if waiting:
            data: bytes = ser.read(waiting)
            return data
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b""
        # Not ``ser.timeout = ...``: its setter reconfigures the port, which for RFC 2217 is a
        # renegotiation with the server (a network round trip) before every read. Every
        # pyserial read() takes its timeout from ``_timeout``.
        ser._timeout = remaining
        first: bytes = ser.read(1)
        if first:
            waiting = ser.in_waiting
            if waiting:
                first += ser.read(waiting)
        return first

    def read_available(self) -> bytes:
        """Whatever has arrived already, without waiting."""
        return self.read_some(0.0)

    def discard_input(self) -> None:
        """Drop everything received and not read yet."""
        ser: Any = self._ser
        try:
            ser.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise self._lost(exc, "discarding input") from None

    # -- lines and lifetime ---------------------------------------------------------------

    @property
    def has_reset_line(self) -> bool:
        """Whether :meth:`pulse_reset` can work here: a serial device, an RFC 2217 port
        (whose server may drive the lines) or an emulated ``mpmock://`` board (which models
        the two-transistor auto-reset circuit); not a pseudo-terminal, socket or loop."""
        port = self.port
        if port in _RESET_DRIVERS:
            return True
        if "://" in port:
            return port.split("://", 1)[0].lower() in ("rfc2217", "mpmock")
        return not os.path.realpath(port).startswith("/dev/pts/")

    def pulse_reset(self) -> bool:
        """Pulse the reset line of a typical dev board (RTS asserted with DTR released pulls
        EN low), then restore the levels the port opened with. False where the port has no
        modem lines (a pseudo-terminal): the board was not reset. Where a reset driver is
        registered for the port (:func:`set_reset_driver`), that driver resets the board."""
        driver = _RESET_DRIVERS.get(self.port)
        if driver is not None:
            return bool(driver())
        ser: Any = self._ser
        try:
            ser.dtr = False
            ser.rts = True
            # The pulse width is a hardware timing of the reset circuit, not a wait for data.
            time.sleep(_RESET_PULSE_S)  # ok: a hardware pulse width
            # DTR first: (DTR, RTS) both asserted keeps EN high on the usual two-transistor
            # auto-reset circuit, so restoring never makes a second pulse.
            ser.dtr = self._dtr
            ser.rts = self._rts
        except (serial.SerialException, OSError, ValueError):
            return False
        return True

    def reopen(self, timeout: float) -> None:
        """Close and open the port again, retrying with a bounded backoff until it is back
        (a USB board re-enumerates after a reset) or ``timeout`` seconds pass.

        The same pyserial object is opened again, with the settings and line levels it had
        (an ``mpmock://`` board whose link dropped is reconnected, not replaced); the board
        lock stays held throughout.
        """
        if self._closed:
            raise DeviceConnectionError(f"{self.port}: the transport is closed", port=self.port)
        self._close_port()
        deadline = time.monotonic() + timeout
        attempt = 0
        ser: Any = self._ser
        while True:
            try:
                try:
                    _open_quietly(ser)
                except (serial.SerialException, OSError, ValueError) as exc:
                    raise DeviceConnectionError(
                        f"cannot open {self.port}: {_reason(exc)}", port=self.port
                    ) from None
            except DeviceConnectionError as exc:
                with contextlib.suppress(serial.SerialException, OSError, ValueError):
                    _close_serial(ser)  # a half-open object refuses the next open()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise DeviceConnectionError(
                        f"{exc} (still failing after {timeout:g} s of retries)", port=self.port
                    ) from None
                delay = _REOPEN_BACKOFF_S[min(attempt, len(_REOPEN_BACKOFF_S) - 1)]
                attempt += 1
                # No event tells us a device node came back: retry after a bounded pause.
                time.sleep(min(delay, remaining))  # ok: backoff between reopen attempts
                continue
            self._fd = self._posix_fd(ser)
            return

    @property
    def is_open(self) -> bool:
        """True until :meth:`close`."""
        return bool(self._ser.is_open)

    def _close_port(self) -> None:
        try:
            _close_serial(self._ser)
        except (serial.SerialException, OSError, ValueError):
            pass
        self._fd = None

    def close(self) -> None:
        """Close the port and release the board lock (idempotent). The line levels are
        left as they are."""
        self._closed = True
        self._close_port()
        if self._lock is not None:
            self._lock.release()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Transport {self.port} {'open' if self.is_open else 'closed'}>"
