"""One hierarchy of errors, rooted in :class:`MpSessionError`.

Exceptions carry their data as attributes so callers (and the pytest report) never have to
parse messages. Lower layers raise these directly; nothing else escapes the package's public
calls (pyserial's ``SerialException`` and ``OSError`` are converted at the transport).
"""

from __future__ import annotations

__all__ = [
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "MpSessionError",
    "ProtocolError",
]


class MpSessionError(Exception):
    """Base of every error this package raises."""


class DeviceError(MpSessionError):
    """An exception raised by code running on the board.

    ``exc_type`` is the board's exception class name (``"ZeroDivisionError"``), ``message`` its
    text, and ``traceback`` the traceback exactly as the board printed it.
    """

    def __init__(
        self,
        message: str,
        *,
        exc_type: str = "",
        traceback: str = "",
        port: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exc_type = exc_type
        self.traceback = traceback
        self.port = port

    def __str__(self) -> str:
        if self.exc_type:
            return f"{self.exc_type}: {self.message}" if self.message else self.exc_type
        return self.message


class DeviceTimeout(DeviceError):
    """A board call ran out of time; the board was interrupted and is usable again
    (unless the message says recovery failed)."""

    def __init__(self, message: str, *, timeout: float | None = None, **kwargs: str | None) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.timeout = timeout

    def __str__(self) -> str:
        return self.message


class DeviceConnectionError(MpSessionError):
    """The link to the board failed: the port cannot be opened, vanished, or the board does
    not answer the raw REPL. ``port`` names the port."""

    def __init__(self, message: str, *, port: str | None = None) -> None:
        super().__init__(message)
        self.port = port


class ProtocolError(MpSessionError):
    """The board sent bytes that make no sense for the raw-REPL protocol."""
