"""One hierarchy of errors, rooted in :class:`MpSessionError`.

Exceptions carry their data as attributes so callers (and the pytest report) never have to
parse messages. Lower layers raise these directly; nothing else escapes the package's public
calls (pyserial's ``SerialException`` and ``OSError`` are converted at the transport).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BoardBrokenError",
    "BoardBusyError",
    "BoardDisconnectedError",
    "BoardFault",
    "BoardHungError",
    "BoardNoiseError",
    "BoardResetError",
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "MpSessionError",
    "OutputLimitError",
    "ProtocolError",
    "RecoveryReport",
]


class MpSessionError(Exception):
    """Base of every error this package raises."""


class DeviceError(MpSessionError):
    """An exception raised by code running on the board.

    ``exc_type`` is the board's exception class name (``"ZeroDivisionError"``), ``message`` its
    text, ``traceback`` the traceback exactly as the board printed it, and ``output`` what
    the code printed before it raised.
    """

    def __init__(
        self,
        message: str,
        *,
        exc_type: str = "",
        traceback: str = "",
        port: str | None = None,
        output: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exc_type = exc_type
        self.traceback = traceback
        self.port = port
        self.output = output

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


class OutputLimitError(ProtocolError):
    """The code printed more than the host keeps (``Communicator.output_limit``): ``output``
    holds the start and the end of it, ``dropped`` how many bytes were left out between.
    Pass ``on_stdout`` to stream such output instead."""

    def __init__(self, message: str, *, output: str, dropped: int) -> None:
        super().__init__(message)
        self.output = output
        self.dropped = dropped


# -- what happened to the board (see Communicator.recover) ------------------------------


@dataclass(frozen=True)
class RecoveryReport:
    """What a recovery (``Communicator.recover``) did.

    ``steps``: the escalation steps tried, in order (``"interrupt"``, ``"soft reset"``,
    ``"reset line"``, ``"reopen"``); ``recovered``: the board is at an idle raw-REPL prompt
    again (by the last step); ``ram_lost``: its RAM is not the one before the fault (it
    reset); ``elapsed``: seconds taken; ``detail``: why the last step failed (when not
    recovered).
    """

    steps: tuple[str, ...]
    recovered: bool
    ram_lost: bool
    elapsed: float
    detail: str = ""

    @property
    def how(self) -> str:
        """The step that brought the board back, in words (``""`` when none did)."""
        if not self.recovered or not self.steps:
            return ""
        return {
            "interrupt": "resynchronised at its raw-REPL prompt",
            "soft reset": "soft reset",
            "reset line": "reset through its reset line",
            "reopen": "reconnected by reopening its port",
        }[self.steps[-1]]


class BoardFault:
    """Mixin of the errors that say what happened to the board during a call (raised by
    :class:`~pytest_mpsession.communicator.Communicator`).

    ``fault``: ``"reset"`` (the board rebooted by itself), ``"timeout"`` (a hang: no answer,
    not even to Ctrl-C), ``"disconnect"`` (the link dropped), ``"noise"`` (bytes that are no reply),
    ``"broken"`` (an earlier recovery failed); ``recovery``: what was done about it (a
    :class:`RecoveryReport`), ``recovered``: whether the board is usable again,
    ``ram_lost``: whether its RAM (every variable) is gone.
    """

    fault: str = ""
    recovery: RecoveryReport | None = None

    @property
    def recovered(self) -> bool:
        """True when the board is back at an idle raw-REPL prompt."""
        return self.recovery is not None and self.recovery.recovered

    @property
    def ram_lost(self) -> bool:
        """True when the board's RAM is gone (it reset)."""
        return self.recovery is not None and self.recovery.ram_lost


class BoardResetError(BoardFault, DeviceConnectionError):
    """The board reset during the call (brown-out, watchdog, crash, a killed process): its
    boot text came instead of the reply, and its RAM is gone."""


class BoardDisconnectedError(BoardFault, DeviceConnectionError):
    """The link to the board dropped during the call (the port vanished, a USB board fell
    off the bus, a network link closed); the port was reopened if it came back."""


class BoardNoiseError(BoardFault, ProtocolError):
    """The board sent bytes that are no reply (line noise, a stray print, a wrong baud
    rate) where the reply should start; the code may or may not have run."""


class BoardHungError(BoardFault, DeviceTimeout):
    """No answer within the timeout, and none to Ctrl-C either: the board was brought back
    by a reset or a reopened port (or, if ``recovered`` is False, not at all)."""


class BoardBrokenError(BoardFault, DeviceConnectionError):
    """An earlier recovery failed: the board is unusable until
    :meth:`~pytest_mpsession.communicator.Communicator.recover`
    succeeds (calls fail at once instead of each waiting out its timeout)."""


class BoardBusyError(DeviceConnectionError):
    """Another process (or another open in this one) holds the board.

    ``holder`` is what the holder wrote into the lock file (``pid``, ``host``, ``cmd``,
    ``since``; empty when it could not be read), ``lock_path`` the lock file.
    """

    def __init__(self, message: str, *, port: str, holder: dict[str, str], lock_path: str):
        super().__init__(message, port=port)
        self.holder = holder
        self.lock_path = lock_path
