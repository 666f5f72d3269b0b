"""The client side of MicroPython's raw REPL and raw-paste mode, sans-IO.

Bytes in, events out, bytes to send: no serial port, no clock, no threads. A driver (the
communicator) writes what :meth:`RawReplClient.data_to_send` returns, feeds what the board
sends to :meth:`RawReplClient.receive_data` and reads events from
:meth:`RawReplClient.next_event` until it returns :data:`NEED_DATA`. Timeouts are the driver's
business: the engine never waits, it only says what it is waiting for (:attr:`state`).

The protocol (MicroPython ``docs/reference/repl.rst``), as the board sends it::

    enter:      host "\\r\\x03\\x03\\x01"  board  <any chatter> "raw REPL; CTRL-B to exit\\r\\n>"
    plain raw:  host <code> "\\x04"        board  "OK" <stdout> "\\x04" <stderr> "\\x04>"
    raw-paste:  host "\\x05A\\x01"          board  "R\\x01" <window: u16 LE>   ("R\\x00" or the
                host <code, window-paced>  board  "\\x01" per window   banner: not supported)
                host "\\x04"               board  "\\x04" <stdout> "\\x04" <stderr> "\\x04>"
    soft reset: host "\\x04" (empty line)  board  "OK" <reboot chatter> <banner again>
    interrupt:  host "\\x03" while code runs: a KeyboardInterrupt traceback on stderr
    leave:      host "\\x02"               board  "\\r\\n" <friendly banner> ">>> "

The whole state machine is the table :data:`TRANSITIONS` below; every state change goes
through it, and anything the table does not allow raises :class:`ProtocolError`.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from pytest_mpsession.errors import ProtocolError
from pytest_mpsession.protocol.constants import (
    CTRL_A,
    CTRL_B,
    CTRL_C,
    CTRL_D,
    EXEC_OK,
    FRIENDLY_PROMPT,
    RAW_PASTE_REQUEST,
    RAW_PASTE_SUPPORTED,
    RAW_PASTE_UNSUPPORTED,
    RAW_REPL_BANNER,
    RAW_REPL_PROMPT,
)

__all__ = [
    "INTERRUPT",
    "NEED_DATA",
    "PLAIN_RAW_CHUNK",
    "TRANSITIONS",
    "CodeRejected",
    "CodeRequested",
    "Event",
    "ExecFinished",
    "ExecStarted",
    "LeftRawRepl",
    "NeedData",
    "RawPasteAccepted",
    "RawPasteRefused",
    "RawReplClient",
    "RawReplEntered",
    "SoftResetStarted",
    "State",
    "Stderr",
    "Stdout",
    "Stray",
    "Synced",
    "Trigger",
]

# Interrupt whatever runs (Ctrl-C twice: a program that catches one KeyboardInterrupt in a
# loop usually does not catch the second), after a CR that ends a half-typed friendly line.
INTERRUPT: Final = b"\r" + CTRL_C + CTRL_C
# Plain raw mode has no flow control: the board's UART buffer (256 bytes on most ports) must
# not overflow while it copies the line into its heap, so the driver paces these chunks.
PLAIN_RAW_CHUNK: Final = 256
# The board's answer to a raw-paste request that old firmware does not recognise: Ctrl-A in
# the raw REPL resets it and prints the banner without the leading CRLF.
_PASTE_FALLBACK: Final = RAW_REPL_BANNER + RAW_REPL_PROMPT
_BANNER_PROMPT: Final = RAW_REPL_BANNER + RAW_REPL_PROMPT
# How much of the chatter before a banner is kept for error messages.
_CHATTER_KEPT: Final = 200
_SYNC_END: Final = CTRL_D + CTRL_D + RAW_REPL_PROMPT
# "OK" and at once the end of stdout: a framed exchange whose wrapper never printed
_OK_EOT: Final = EXEC_OK + CTRL_D
# Bytes plain raw mode treats as commands (Ctrl-A reset, Ctrl-B leave, Ctrl-C clear line,
# Ctrl-D end) and raw-paste as end / interrupt: code can never contain them.
_UNSENDABLE: Final = (CTRL_A, CTRL_B, CTRL_C, CTRL_D)
# Framed exchanges: at most this much noise is skipped before a reply (line noise comes in
# short bursts; a board's boot text is longer and must be seen as what it is).
_NOISE_LIMIT: Final = 48
# A framed reply's trailer after its token: ")", a status byte, a record count.
_TRAILER_MAX: Final = 12


class State(enum.Enum):
    """Where the client believes the board is."""

    # Members are singletons: identity hashing (Enum's own hashes the name in Python, and
    # every transition looks states up in dicts, several times per exchange).
    __hash__ = object.__hash__

    UNKNOWN = "unknown"  # not talked to yet: anything could be running
    ENTERING = "entering"  # interrupt + Ctrl-A sent, skipping chatter until the banner
    SYNCING = "syncing"  # a marker program sent, skipping everything until its output
    READY = "ready"  # at the raw-REPL prompt '>', idle
    PASTE_REQUESTED = "paste-requested"  # Ctrl-E A Ctrl-A sent, waiting for R\x01 / R\x00
    PASTE_WINDOW = "paste-window"  # R\x01 received, waiting for the 16-bit window size
    PASTE_SENDING = "paste-sending"  # code going out, paced by the device's window
    PASTE_ENDING = "paste-ending"  # all code and the Ctrl-D sent, waiting for the Ctrl-D ack
    RAW_WAIT_OK = "raw-wait-ok"  # plain raw: code + Ctrl-D (being) sent, waiting for "OK"
    STDOUT = "stdout"  # code running: its stdout, until Ctrl-D
    STDERR = "stderr"  # its stderr (a traceback), until Ctrl-D
    PROMPT = "prompt"  # waiting for the '>' that ends an exec
    SOFT_WAIT_OK = "soft-wait-ok"  # Ctrl-D on an empty line sent, waiting for "OK"
    SOFT_REBOOTING = "soft-rebooting"  # the board reboots: chatter until the banner
    LEAVING = "leaving"  # Ctrl-B sent, waiting for the friendly prompt
    FRIENDLY = "friendly"  # at the friendly REPL
    ERROR = "error"  # a ProtocolError happened: only a resync (enter_raw_repl) leaves it


class Trigger(enum.Enum):
    """What moves the state machine: a host command or something the board sent."""

    __hash__ = object.__hash__  # identity, as for State

    # host commands
    ENTER = "enter"
    SYNC = "sync"
    EXEC_PASTE = "exec-paste"
    EXEC_RAW = "exec-raw"
    INTERRUPT = "interrupt"
    SOFT_RESET = "soft-reset"
    LEAVE = "leave"
    ALL_SENT = "all-sent"  # the last raw-paste byte and its Ctrl-D were handed out
    # board tokens
    BANNER = "banner"
    SYNC_MARK = "sync-mark"
    PASTE_YES = "paste-yes"
    PASTE_NO = "paste-no"
    WINDOW_SIZE = "window-size"
    WINDOW_INC = "window-inc"
    EOT = "eot"  # Ctrl-D from the board
    OK = "ok"
    PROMPT = "prompt"
    FRIENDLY_PROMPT = "friendly-prompt"
    GARBAGE = "garbage"  # bytes the state does not allow


_S = State
_T = Trigger
# The state machine, all of it: state -> trigger -> next state. A trigger missing here is a
# protocol error (a board token) or a misuse (a host command). ENTER, the resynchronisation,
# is allowed everywhere and added below.
TRANSITIONS: Final[dict[State, dict[Trigger, State]]] = {
    _S.UNKNOWN: {},
    _S.ENTERING: {_T.BANNER: _S.READY},
    _S.SYNCING: {_T.SYNC_MARK: _S.READY},
    _S.READY: {
        _T.EXEC_PASTE: _S.PASTE_REQUESTED,
        _T.EXEC_RAW: _S.RAW_WAIT_OK,
        _T.SOFT_RESET: _S.SOFT_WAIT_OK,
        _T.LEAVE: _S.LEAVING,
        _T.SYNC: _S.SYNCING,
    },
    _S.PASTE_REQUESTED: {
        _T.PASTE_YES: _S.PASTE_WINDOW,
        _T.PASTE_NO: _S.RAW_WAIT_OK,  # "R\x00", or the banner of firmware without raw-paste
    },
    _S.PASTE_WINDOW: {_T.WINDOW_SIZE: _S.PASTE_SENDING},
    _S.PASTE_SENDING: {
        _T.WINDOW_INC: _S.PASTE_SENDING,
        _T.ALL_SENT: _S.PASTE_ENDING,
        _T.EOT: _S.STDOUT,  # the device aborts reception (e.g. a syntax error): we ack it
    },
    _S.PASTE_ENDING: {_T.WINDOW_INC: _S.PASTE_ENDING, _T.EOT: _S.STDOUT},
    _S.RAW_WAIT_OK: {_T.OK: _S.STDOUT},
    _S.STDOUT: {_T.EOT: _S.STDERR, _T.INTERRUPT: _S.STDOUT},
    _S.STDERR: {_T.EOT: _S.PROMPT, _T.INTERRUPT: _S.STDERR},
    _S.PROMPT: {_T.PROMPT: _S.READY, _T.INTERRUPT: _S.PROMPT},
    _S.SOFT_WAIT_OK: {_T.OK: _S.SOFT_REBOOTING},
    # A board comes back in the raw REPL; one that comes back friendly gets a Ctrl-A.
    _S.SOFT_REBOOTING: {_T.BANNER: _S.READY, _T.FRIENDLY_PROMPT: _S.ENTERING},
    _S.LEAVING: {_T.FRIENDLY_PROMPT: _S.FRIENDLY},
    _S.FRIENDLY: {},
    _S.ERROR: {},
}
for _moves in TRANSITIONS.values():
    _moves[_T.ENTER] = _S.ENTERING
del _moves

_RUNNING: Final = frozenset({State.STDOUT, State.STDERR, State.PROMPT})


@dataclass(frozen=True)
class RawReplEntered:
    """The raw-REPL banner and prompt arrived: the board is idle at '>'."""


@dataclass(frozen=True)
class Synced:
    """The marker program of :meth:`RawReplClient.sync` ran: board and client agree again."""


@dataclass(frozen=True)
class RawPasteAccepted:
    """The board entered raw-paste mode; ``window`` is its flow-control increment."""

    window: int


@dataclass(frozen=True)
class RawPasteRefused:
    """The board has no raw-paste mode; the code goes out in plain raw mode instead."""


@dataclass(frozen=True)
class ExecStarted:
    """The board received (and in plain raw mode compiled) the code and runs it."""


@dataclass(frozen=True)
class Stdout:
    """A piece of the running code's output, as it arrives."""

    data: bytes


@dataclass(frozen=True)
class Stderr:
    """A piece of the code's error output: the traceback of an uncaught exception."""

    data: bytes


@dataclass(frozen=True)
class ExecFinished:
    """The code ended and the board is back at '>'. ``interrupted``: a Ctrl-C was sent.

    For a framed exchange (see :meth:`RawReplClient.exec`): ``status`` is the board's
    trailer status (``"."`` ended, ``"x"`` SystemExit, ``"e"`` an exception, whose traceback
    came as :class:`Stderr`), None when no trailer came (the wrapper never ran, or the
    reply was cut); ``records`` is how many result records the trailer announced.
    """

    interrupted: bool = False
    status: str | None = None
    records: int = 0


@dataclass(frozen=True)
class CodeRequested:
    """A framed exchange's wrapper asks for the streamed code: it goes out now."""


@dataclass(frozen=True)
class CodeRejected:
    """A framed exchange's wrapper found the code damaged (its checksum did not match) and
    ran none of it; ExecFinished follows."""


@dataclass(frozen=True)
class SoftResetStarted:
    """The board acknowledged a soft reset: its RAM (every variable) is gone."""


@dataclass(frozen=True)
class LeftRawRepl:
    """The board is back at the friendly REPL ('>>> ')."""


@dataclass(frozen=True)
class Stray:
    """Output while the board was idle (a timer callback's print, a repeated banner)."""

    data: bytes


Event = (
    RawReplEntered
    | Synced
    | RawPasteAccepted
    | RawPasteRefused
    | ExecStarted
    | Stdout
    | Stderr
    | ExecFinished
    | CodeRejected
    | CodeRequested
    | SoftResetStarted
    | LeftRawRepl
    | Stray
)


class NeedData:
    """The type of :data:`NEED_DATA`."""

    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()
"""Returned by :meth:`RawReplClient.next_event` when the board must send more first."""


def _show(data: bytes | bytearray, limit: int = 40) -> str:
    """A short printable form of bytes for error messages."""
    shown = bytes(data[:limit])
    return repr(shown) + ("..." if len(data) > limit else "")


class RawReplClient:
    """The host side of one board's raw REPL: a state machine fed with bytes.

    Command methods (:meth:`enter_raw_repl`, :meth:`exec`, ...) change the state and return
    the bytes to write now; :meth:`data_to_send` returns what became sendable since (raw-paste
    data as the device's window opens, plain raw chunks, acknowledgements). ``raw_chunk``
    bounds each plain raw write so that the driver can pace them.
    """

    def __init__(self, *, raw_chunk: int = PLAIN_RAW_CHUNK) -> None:
        if raw_chunk < 1:
            raise ValueError(f"raw_chunk must be >= 1, got {raw_chunk}")
        self.state: State = State.UNKNOWN
        self.raw_chunk = raw_chunk
        self._buf = bytearray()  # received, not yet parsed
        self._out = bytearray()  # control bytes to send, ahead of any payload
        self._payload = b""  # the code being sent
        self._sent = 0  # how much of _payload went out
        self._window = 0  # raw-paste: bytes the device can take now
        self._window_inc = 0  # raw-paste: what each Ctrl-A from the device adds
        self._interrupted = False
        self._sync_count = 0
        self._sync_marker = b""
        self._fresh = False  # bytes received since the last NEED_DATA
        self.chatter = bytearray()  # the last bytes skipped while looking for a banner
        # Framed exchanges: the token that starts every record of the board-side wrapper,
        # where the reply is in its frame (0 start expected, 1 output, 2 traceback, 3 done),
        # and what the trailer said.
        self._frame = b""
        self._ok_frame = EXEC_OK  # "OK" and the first byte of the frame's token
        self._open = b"("  # the frame's start: its token and "("
        self._skip = False
        self._code_stream = b""
        self._stream_sent = -1
        self._phase = 0
        self._status: str | None = None
        self._records = 0
        self._noise = 0
        #: noise bytes skipped before a framed reply (counted, never parsed as reply)
        self.noise_skipped = 0

    # -- the table ----------------------------------------------------------------------

    def _move(self, trigger: Trigger, data: bytes | bytearray = b"") -> None:
        """Take one transition of :data:`TRANSITIONS`, or raise ProtocolError."""
        nxt = TRANSITIONS[self.state].get(trigger)
        if nxt is None:
            old = self.state
            if trigger in _HOST_TRIGGERS:
                raise ProtocolError(
                    f"cannot {trigger.value} while the raw REPL is {old.value}; "
                    "resynchronise with enter_raw_repl() first"
                )
            self.state = State.ERROR
            got = _show(data) if data else trigger.value
            raise ProtocolError(f"unexpected {got} from the board while {old.value}")
        self.state = nxt

    def _garbage(self, expected: str) -> ProtocolError:
        old = self.state
        self.state = State.ERROR
        return ProtocolError(
            f"expected {expected} from the board while {old.value}, got {_show(self._buf)}"
        )

    # -- host commands --------------------------------------------------------------------

    def enter_raw_repl(self) -> bytes:
        """Interrupt whatever runs and enter the raw REPL; also the resynchronisation from
        any state. Wait for :class:`RawReplEntered`."""
        self._move(Trigger.ENTER)
        self._reset_exchange()
        self._out += INTERRUPT + CTRL_A
        return self.data_to_send()

    def sync(self) -> bytes:
        """Run a marker program and skip everything the board sends until its output
        (e.g. repeated banners after retried enters). Wait for :class:`Synced`."""
        self._move(Trigger.SYNC)
        self._sync_count += 1
        # The marker is built on the board so an echo of the code never matches it.
        self._sync_marker = b"mpsync:%d" % self._sync_count
        self._out += b"print('mpsync:'+'%d',end='')" % self._sync_count + CTRL_D
        self._buf.clear()
        return self.data_to_send()

    def exec(
        self,
        code: bytes,
        *,
        raw_paste: bool = True,
        frame: bytes = b"",
        skip_noise: bool = False,
        stream: bytes = b"",
    ) -> bytes:
        """Send ``code`` to run: with raw-paste (falls back to plain raw mode by itself when
        the board refuses), or in plain raw mode. Events: ExecStarted, Stdout..., Stderr...,
        ExecFinished.

        ``frame``: the code is a call of the board-side wrapper that frames its reply with
        this token (``\x1e`` and the exchange number): ``TOKEN(`` before the code's output,
        ``TOKENe`` before a traceback, ``TOKEN)`` + status + record count right before the
        end of stdout, or ``TOKEN!`` alone when it refused damaged code
        (:class:`CodeRejected`). The output between may hold any byte (``\x04`` too):
        only the token ends it. Noise before the reply's start is skipped (counted in
        :attr:`noise_skipped`): the token, which noise cannot forge, must follow.
        ``skip_noise``: skip noise before "OK" (or raw-paste's end) for an unframed
        exchange too, for code whose output checks itself. ``stream``: bytes the wrapper
        reads from its stdin once it says ``TOKEN<`` (the code itself, sent as it is rather
        than as a literal): they go out then, in ``raw_chunk`` pieces the driver paces
        (:attr:`stream_pending`); :attr:`stream_unacked` until the wrapper answers."""
        for byte in _UNSENDABLE:
            if byte in code:
                raise ValueError(
                    f"code contains the control byte {byte!r}, which the raw REPL cannot carry; "
                    f"write it as an escape inside a string literal"
                )
        self._move(Trigger.EXEC_PASTE if raw_paste else Trigger.EXEC_RAW)
        self._reset_exchange()
        self._frame = bytes(frame)
        self._ok_frame = EXEC_OK + self._frame[:1]
        self._open = self._frame + b"("
        self._skip = skip_noise or bool(frame)
        self._code_stream = bytes(stream)
        self._stream_sent = -1  # -1: not asked for yet
        self._payload = bytes(code)
        if raw_paste:
            self._out += RAW_PASTE_REQUEST
        return self.data_to_send()

    def interrupt(self) -> bytes:
        """Stop the running code (Ctrl-C): ExecFinished(interrupted=True) follows. When no
        code is running yet (code still going out, or no "OK"), a full resync instead."""
        if self.state in _RUNNING:
            self._move(Trigger.INTERRUPT)
            self._interrupted = True
            return CTRL_C
        return self.enter_raw_repl()

    def soft_reset(self) -> bytes:
        """Ctrl-D on the empty raw-REPL line. Events: SoftResetStarted, RawReplEntered."""
        self._move(Trigger.SOFT_RESET)
        self._reset_exchange()
        self._out += CTRL_D
        return self.data_to_send()

    def leave_raw_repl(self) -> bytes:
        """Ctrl-B: back to the friendly REPL. Event: LeftRawRepl."""
        self._move(Trigger.LEAVE)
        self._reset_exchange()
        self._out += CTRL_B
        return self.data_to_send()

    def _reset_exchange(self) -> None:
        self._buf.clear()
        self._out.clear()
        self._payload = b""
        self._sent = 0
        self._window = 0
        self._interrupted = False
        self.chatter.clear()
        self._frame = b""
        self._skip = False
        self._code_stream = b""
        self._stream_sent = -1
        self._phase = 0
        self._status = None
        self._records = 0
        self._noise = 0

    # -- output ---------------------------------------------------------------------------

    @property
    def raw_chunks_pending(self) -> bool:
        """True while plain raw code is still to be sent (the driver paces these writes)."""
        return self.state is State.RAW_WAIT_OK and self._sent < len(self._payload) + 1

    @property
    def stream_pending(self) -> bool:
        """True while streamed code is still to be sent (the driver paces these writes)."""
        return 0 <= self._stream_sent < len(self._code_stream)

    @property
    def stream_unacked(self) -> bool:
        """True from the wrapper's request for streamed code until its answer to it."""
        return self._stream_sent >= 0 and self._phase == 0

    @property
    def recent_input(self) -> bytes:
        """The last bytes received while looking for a banner, parsed or not (for errors)."""
        return bytes(self.chatter + self._buf)[-_CHATTER_KEPT:]

    @property
    def has_input(self) -> bool:
        """True when bytes were received since :meth:`next_event` last returned NEED_DATA."""
        return self._fresh

    def data_to_send(self) -> bytes:
        """The bytes to write now (``b""``: nothing until the board says more)."""
        out = b""
        if self._out:
            out = bytes(self._out)
            self._out.clear()
        if self.state is State.PASTE_SENDING:
            n = min(self._window, len(self._payload) - self._sent)
            out += self._payload[self._sent : self._sent + n]
            self._sent += n
            self._window -= n
            if self._sent == len(self._payload):
                out += CTRL_D
                self._move(Trigger.ALL_SENT)
        elif self.stream_pending and self.state is State.STDOUT:
            end = min(self._stream_sent + self.raw_chunk, len(self._code_stream))
            out += self._code_stream[self._stream_sent : end]
            self._stream_sent = end
        elif self.state is State.RAW_WAIT_OK and self._sent <= len(self._payload):
            # The payload plus its terminating Ctrl-D, one paced chunk at a time.
            end = min(self._sent + self.raw_chunk, len(self._payload) + 1)
            out += (self._payload + CTRL_D)[self._sent : end]
            self._sent = end
        return out

    # -- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the board (any split, any size)."""
        if self.state is State.ERROR and data:
            raise ProtocolError("the raw REPL is out of step; resynchronise with enter_raw_repl()")
        self._buf += data
        if data:
            self._fresh = True

    def next_event(self) -> Event | NeedData:
        """The next event parsed from the received bytes, or NEED_DATA."""
        while self._buf:
            result = _HANDLERS[self.state](self)
            if result is NEED_DATA:
                break
            if result is not None:
                return result
            # None: the handler consumed input silently; parse on.
        self._fresh = False
        return NEED_DATA

    # Each handler parses from self._buf for one state. It returns an event, NEED_DATA when
    # the buffer is too short to decide, or None after consuming something silently.

    def _skip_to(self, pattern: bytes) -> int:
        """Find ``pattern`` in the buffer; if absent, drop all but a tail that could still
        start it (kept as chatter). Returns the index after the match, or -1."""
        i = self._buf.find(pattern)
        if i >= 0:
            self._keep_chatter(self._buf[:i])
            return i + len(pattern)
        keep = len(pattern) - 1
        if len(self._buf) > keep:
            cut = len(self._buf) - keep
            self._keep_chatter(self._buf[:cut])
            del self._buf[:cut]
        return -1

    def _keep_chatter(self, data: bytes | bytearray) -> None:
        self.chatter += data
        if len(self.chatter) > _CHATTER_KEPT:
            del self.chatter[: len(self.chatter) - _CHATTER_KEPT]

    def _on_unknown(self) -> Event | NeedData | None:
        # Before the first enter, whatever the board says is noise.
        self._keep_chatter(self._buf)
        self._buf.clear()
        return None

    def _on_entering(self) -> Event | NeedData | None:
        end = self._skip_to(_BANNER_PROMPT)
        if end < 0:
            return NEED_DATA
        del self._buf[:end]
        self._move(Trigger.BANNER)
        return RawReplEntered()

    def _on_syncing(self) -> Event | NeedData | None:
        end = self._skip_to(self._sync_marker + _SYNC_END)
        if end < 0:
            return NEED_DATA
        del self._buf[:end]
        self._move(Trigger.SYNC_MARK)
        return Synced()

    def _on_ready(self) -> Event | NeedData | None:
        data = bytes(self._buf)
        self._buf.clear()
        return Stray(data)

    def _on_friendly(self) -> Event | NeedData | None:
        return self._on_ready()

    def _on_paste_requested(self) -> Event | NeedData | None:
        head = bytes(self._buf[:2])
        if len(head) < 2:
            if _PASTE_FALLBACK.startswith(head) or RAW_PASTE_SUPPORTED.startswith(head):
                return NEED_DATA
            raise self._garbage("a raw-paste answer (R\\x01, R\\x00 or the banner)")
        if head == RAW_PASTE_SUPPORTED:
            del self._buf[:2]
            self._move(Trigger.PASTE_YES)
            return None
        if head == RAW_PASTE_UNSUPPORTED:
            del self._buf[:2]
            return self._paste_refused()
        n = min(len(self._buf), len(_PASTE_FALLBACK))
        if self._buf[:n] != _PASTE_FALLBACK[:n]:
            raise self._garbage("a raw-paste answer (R\\x01, R\\x00 or the banner)")
        if n < len(_PASTE_FALLBACK):
            return NEED_DATA
        del self._buf[:n]
        return self._paste_refused()

    def _paste_refused(self) -> Event:
        self._move(Trigger.PASTE_NO)
        self._sent = 0  # the code now goes out in plain raw chunks
        return RawPasteRefused()

    def _on_paste_window(self) -> Event | NeedData | None:
        if len(self._buf) < 2:
            return NEED_DATA
        (window,) = struct.unpack("<H", self._buf[:2])
        if window == 0:
            raise self._garbage("a raw-paste window size above 0")
        del self._buf[:2]
        self._move(Trigger.WINDOW_SIZE)
        self._window_inc = self._window = window
        return RawPasteAccepted(window)

    def _on_paste_sending(self) -> Event | NeedData | None:
        byte = self._buf[:1]
        if byte == CTRL_A:
            # Window increments often come several at a time: take the whole run at once.
            n = len(self._buf) - len(self._buf.lstrip(CTRL_A))
            del self._buf[:n]
            self._move(Trigger.WINDOW_INC)
            self._window += n * self._window_inc
            return None
        if byte == CTRL_D:
            # The device stops reading (a syntax error, out of memory): acknowledge with our
            # Ctrl-D, send nothing more, and read the outcome like a normal exec.
            del self._buf[:1]
            self._move(Trigger.EOT)
            self._payload = b""
            self._out += CTRL_D
            return ExecStarted()
        raise self._garbage("a raw-paste flow-control byte (\\x01 or \\x04)")

    def _on_paste_ending(self) -> Event | NeedData | None:
        byte = self._buf[:1]
        if byte == CTRL_A:  # a late window increment: nothing more to send
            del self._buf[:1]
            self._move(Trigger.WINDOW_INC)
            return None
        if byte == CTRL_D:
            del self._buf[:1]
            self._move(Trigger.EOT)
            return ExecStarted()
        if self._skip and self._skip_noise(1):
            return None
        raise self._garbage("the raw-paste end acknowledgement (\\x04)")

    def _skip_noise(self, n: int) -> bool:
        """Framed exchanges: drop ``n`` bytes of noise before the reply (False once more
        than _NOISE_LIMIT were dropped: that is no line noise, e.g. a board's boot text)."""
        if self._noise + n > _NOISE_LIMIT:
            return False
        self._noise += n
        self.noise_skipped += n
        self._keep_chatter(self._buf[:n])
        del self._buf[:n]
        return True

    def _on_raw_wait_ok(self) -> Event | NeedData | None:
        if self._frame:
            # "OK" must be followed by the frame's start (or at once by the end of an
            # output the wrapper never printed to): noise before it cannot forge that.
            ok_frame = self._ok_frame
            head = self._buf[: len(ok_frame)]
            if head == ok_frame or head == _OK_EOT:
                pass
            elif len(head) < len(ok_frame) and (
                ok_frame.startswith(head) or _OK_EOT.startswith(head)
            ):
                return NEED_DATA
            elif self._skip_noise(1):
                return None
        elif self._skip and not EXEC_OK.startswith(bytes(self._buf[:2])):
            if self._skip_noise(1):
                return None
        n = min(len(self._buf), len(EXEC_OK))
        if self._buf[:n] != EXEC_OK[:n]:
            raise self._garbage("'OK'")
        if n < len(EXEC_OK):
            return NEED_DATA
        del self._buf[:n]
        self._move(Trigger.OK)
        return ExecStarted()

    def _on_stdout(self) -> Event | NeedData | None:
        if self._frame and self._phase < 3:
            return self._framed()
        return self._stream(Stdout)

    def _framed(self) -> Event | NeedData | None:
        """The stdout of a framed exchange (see :meth:`exec`)."""
        tok = self._frame
        buf = self._buf
        if self._phase == 0:
            if buf.startswith(self._open):  # the usual start, taken first
                del buf[: len(self._open)]
                self._phase = 1
                return None
            if buf[:1] == CTRL_D:
                self._phase = 3  # the wrapper printed nothing: an error before it ran
                return self._stream(Stdout)
            head = bytes(buf[: len(tok) + 1])
            if head == tok + b"<" and self._code_stream and self._stream_sent < 0:
                del buf[: len(head)]
                self._stream_sent = 0  # the code goes out now (data_to_send)
                return CodeRequested()
            if head == tok + b"(":
                del buf[: len(head)]
                self._phase = 1
                return None
            if head == tok + b"!":
                del buf[: len(head)]
                self._phase = 3
                return CodeRejected()
            if len(head) <= len(tok) and tok.startswith(head):
                return NEED_DATA
            # A refusal under another exchange number: the number itself arrived damaged
            # (it is part of what the checksum covers), so nothing ran either.
            digits = len(buf) - len(buf[1:].lstrip(b"0123456789")) - 1
            if buf[:1] == b"\x1e" and digits > 0:
                end = 1 + digits
                if len(buf) == end:
                    return NEED_DATA
                if buf[end : end + 1] == b"!":
                    del buf[: end + 1]
                    self._phase = 3
                    return CodeRejected()
            raise self._garbage("the start of the reply's frame")
        start = 0
        while True:
            i = buf.find(tok, start)
            if i < 0:
                # all but what could be the start of a token is output
                keep = _partial_suffix(buf, tok)
                return self._frame_data(len(buf) - keep)
            if i > 0:
                return self._frame_data(i)
            rest = bytes(buf[len(tok) : len(tok) + 1])
            if not rest:
                return NEED_DATA
            if rest == b"e" and self._phase == 1:
                del buf[: len(tok) + 1]
                self._phase = 2
                return None
            if rest == b")":
                end = buf.find(CTRL_D, len(tok))
                if end < 0:
                    if len(buf) > len(tok) + _TRAILER_MAX:
                        raise self._garbage("the reply's trailer")
                    return NEED_DATA
                trailer = bytes(buf[len(tok) + 1 : end])
                if len(trailer) < 2 or trailer[:1] not in b".xe" or not trailer[1:].isdigit():
                    raise self._garbage("the reply's trailer")
                self._status = trailer[:1].decode()
                self._records = int(trailer[1:])
                del buf[: end + 1]
                self._phase = 3
                self._move(Trigger.EOT)
                return None
            start = i + 1  # the token's bytes inside the output: output

    def _frame_data(self, n: int) -> Event | NeedData | None:
        if n <= 0:
            return NEED_DATA
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return Stderr(data) if self._phase == 2 else Stdout(data)

    def _on_stderr(self) -> Event | NeedData | None:
        return self._stream(Stderr)

    def _stream(self, kind: type[Stdout] | type[Stderr]) -> Event | NeedData | None:
        i = self._buf.find(CTRL_D)
        if i < 0:
            data = bytes(self._buf)
            self._buf.clear()
            return kind(data)
        data = bytes(self._buf[:i])
        if data:
            del self._buf[:i]
            return kind(data)
        del self._buf[:1]
        self._move(Trigger.EOT)
        return None

    def _on_prompt(self) -> Event | NeedData | None:
        if self._buf[:1] != RAW_REPL_PROMPT:
            raise self._garbage("the raw-REPL prompt '>'")
        del self._buf[:1]
        self._move(Trigger.PROMPT)
        interrupted = self._interrupted
        self._interrupted = False
        if self._frame:
            status, records = self._status, self._records
            self._frame = b""
            return ExecFinished(interrupted, status, records)
        return ExecFinished(interrupted)

    def _on_soft_wait_ok(self) -> Event | NeedData | None:
        n = min(len(self._buf), len(EXEC_OK))
        if self._buf[:n] != EXEC_OK[:n]:
            raise self._garbage("'OK' (the soft reset acknowledgement)")
        if n < len(EXEC_OK):
            return NEED_DATA
        del self._buf[:n]
        self._move(Trigger.OK)
        return SoftResetStarted()

    def _on_soft_rebooting(self) -> Event | NeedData | None:
        banner = self._buf.find(_BANNER_PROMPT)
        friendly = self._buf.find(FRIENDLY_PROMPT)
        if banner >= 0 and (friendly < 0 or banner < friendly):
            self._keep_chatter(self._buf[:banner])
            del self._buf[: banner + len(_BANNER_PROMPT)]
            self._move(Trigger.BANNER)
            return RawReplEntered()
        if friendly >= 0:
            # This board reboots into the friendly REPL: ask for the raw one again.
            self._keep_chatter(self._buf[:friendly])
            del self._buf[: friendly + len(FRIENDLY_PROMPT)]
            self._move(Trigger.FRIENDLY_PROMPT)
            self._out += CTRL_A
            return None
        keep = len(_BANNER_PROMPT) - 1
        if len(self._buf) > keep:
            cut = len(self._buf) - keep
            self._keep_chatter(self._buf[:cut])
            del self._buf[:cut]
        return NEED_DATA

    def _on_leaving(self) -> Event | NeedData | None:
        end = self._skip_to(FRIENDLY_PROMPT)
        if end < 0:
            return NEED_DATA
        del self._buf[:end]
        self._move(Trigger.FRIENDLY_PROMPT)
        return LeftRawRepl()

    def _on_error(self) -> Event | NeedData | None:
        raise ProtocolError("the raw REPL is out of step; resynchronise with enter_raw_repl()")


def _partial_suffix(buf: bytearray, tok: bytes) -> int:
    """The length of the longest end of ``buf`` that is a start of ``tok``."""
    for n in range(min(len(tok) - 1, len(buf)), 0, -1):
        if buf.endswith(tok[:n]):
            return n
    return 0


_HOST_TRIGGERS: Final = frozenset(
    {
        Trigger.ENTER,
        Trigger.SYNC,
        Trigger.EXEC_PASTE,
        Trigger.EXEC_RAW,
        Trigger.INTERRUPT,
        Trigger.SOFT_RESET,
        Trigger.LEAVE,
        Trigger.ALL_SENT,
    }
)

_HANDLERS: Final = {
    State.UNKNOWN: RawReplClient._on_unknown,
    State.ENTERING: RawReplClient._on_entering,
    State.SYNCING: RawReplClient._on_syncing,
    State.READY: RawReplClient._on_ready,
    State.PASTE_REQUESTED: RawReplClient._on_paste_requested,
    State.PASTE_WINDOW: RawReplClient._on_paste_window,
    State.PASTE_SENDING: RawReplClient._on_paste_sending,
    State.PASTE_ENDING: RawReplClient._on_paste_ending,
    State.RAW_WAIT_OK: RawReplClient._on_raw_wait_ok,
    State.STDOUT: RawReplClient._on_stdout,
    State.STDERR: RawReplClient._on_stderr,
    State.PROMPT: RawReplClient._on_prompt,
    State.SOFT_WAIT_OK: RawReplClient._on_soft_wait_ok,
    State.SOFT_REBOOTING: RawReplClient._on_soft_rebooting,
    State.LEAVING: RawReplClient._on_leaving,
    State.FRIENDLY: RawReplClient._on_friendly,
    State.ERROR: RawReplClient._on_error,
}
