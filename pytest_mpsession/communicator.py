"""One board, spoken to through its raw REPL: ``exec``, ``eval``, interrupts and resets.

The thin I/O loop around :class:`~pytest_mpsession.protocol.engine.RawReplClient`: it writes
what the engine says, reads with deadlines (no polling: every wait is a blocking read that
ends when bytes arrive or the deadline passes) and turns the engine's events into return
values and errors. One :class:`threading.RLock` serializes whole exchanges, so callers on
several threads never interleave their bytes.

Every exchange of code is *checked* (:mod:`pytest_mpsession.protocol.frame`): a small
wrapper installed in the board's RAM once per board life runs the code only when its
checksum matches, and frames the reply so that neither noise nor the code's own output (any
byte) can end or forge it. A damaged exchange that cannot have run is sent again; one that
may have run raises a typed error saying so. Code longer than :attr:`Communicator.piece_size`
goes in pieces cut between top-level statements, so a small board never holds it whole.

Recovery after a fault is :mod:`pytest_mpsession.recovery`.
"""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from pytest_mpsession.errors import (
    BoardBrokenError,
    BoardDisconnectedError,
    BoardFault,
    BoardHungError,
    BoardNoiseError,
    BoardResetError,
    DeviceConnectionError,
    DeviceError,
    MpSessionError,
    OutputLimitError,
    ProtocolError,
    RecoveryReport,
)
from pytest_mpsession.protocol.constants import (
    FRIENDLY_PROMPT,
    RAW_REPL_BANNER,
)
from pytest_mpsession.protocol.engine import (
    CodeRejected,
    CodeRequested,
    Event,
    ExecFinished,
    ExecStarted,
    NeedData,
    RawPasteAccepted,
    RawPasteRefused,
    RawReplClient,
    RawReplEntered,
    SoftResetStarted,
    State,
    Stderr,
    Stdout,
    Synced,
)
from pytest_mpsession.protocol.frame import (
    BOOTSTRAPPED,
    GC_LINE,
    HASHER,
    OP_EVAL,
    OP_NORECORD,
    OP_NORESERVE,
    PROBE,
    RAN_QUERY,
    WRAPPER,
    bootstrap,
    checksum,
    parse_ran,
    parse_records,
    split_statements,
    token,
    wire,
    wire_streamed,
)
from pytest_mpsession.protocol.replies import parse_literal, parse_traceback
from pytest_mpsession.recovery import (
    OPEN_STEP_SHARE,
    RAM_CHECK,
    RAM_MARK,
    RECOVERY_TIMEOUT,
    RUNNING,
    TAIL,
    Fault,
    KeepsRebooting,
    NoAnswer,
    Rebooted,
    Recovery,
    looks_rebooted,
)
from pytest_mpsession.transport import Transport

__all__ = [
    "BoardBrokenError",
    "BoardDisconnectedError",
    "BoardFault",
    "BoardHungError",
    "BoardNoiseError",
    "BoardResetError",
    "Communicator",
    "RecoveryReport",
    "Reply",
    "parse_literal",
    "parse_traceback",
]

# Code up to this size goes out in plain raw mode even when the board has raw-paste: it fits
# any board's UART buffer, and plain raw needs one round trip where raw-paste needs two.
SMALL_CODE: Final = 256
# Boot text arrived where the reply should be: this much silence after it confirms that the
# board rebooted (code that prints such text goes on printing or ends its reply).
REBOOT_QUIET: Final = 0.05
# A checked exchange is sent at most this many times when the board found it damaged (or
# the host could prove it did not run).
MAX_SENDS: Final = 8
# A board without the wrapper in its RAM answers its call with this (its RAM was lost).
_WRAPPER_GONE: Final = re.compile(rb"name '_mps[hx]' is(?:n't| not) defined")
# Board code of the package's own (the wrapper, the helpers) is sent at most this often.
BOOTSTRAP_SENDS: Final = 40
# A piece of the package's code the board had no memory for is tried this many more times,
# each after a collection (the failed try's garbage freed).
_MEMORY_RETRIES: Final = 2
# After the last byte of code went out, the board acknowledges it ("OK", or raw-paste's
# end) within this time, plus the time the bytes take on the line; otherwise the code (or
# its end) was lost on the way and the exchange is checked and sent again.
ACK_WAIT: Final = 0.5
# What the host keeps of one exchange's output (the rest, from the middle, is counted).
OUTPUT_LIMIT: Final = 1 << 20
# Of that, the start kept (the rest of the limit is the end).
_OUTPUT_HEAD: Final = 64 * 1024
# Code at least this long goes as it is through the wrapper's stdin, not as a literal.
STREAM_MIN: Final = 257
# Code longer than this goes in pieces unless the session manager knows better.
PIECE_SIZE: Final = 1 << 16
# Free bytes kept reserved by the board-side wrapper while code runs (and freed when it
# ends), so the next exchange (a session's cleanup) can compile even after code filled the
# heap: at most this, and at most a sixth of what the board had free when the wrapper was
# installed (1 KB was too little for the unix port and legacy, both 64-bit builds).
RESERVE: Final = 2048
# The wrapper is installed in pieces of at most this many bytes (compiling it whole needs
# more RAM than a small board has free).
_INSTALL_PIECE: Final = 384
# While entering the raw REPL, the interrupt + Ctrl-A is sent again this often (bytes sent
# while a board boots are lost).
ENTER_RETRY: Final = 1.0
# How long machine.reset() gets to show either its error or the board's reboot.
MACHINE_RESET_WAIT: Final = 1.0
# A Ctrl-C is sent again this often until the running code stops.
INTERRUPT_RETRY: Final = 0.5
_HARD_RESET_MARK: Final = "_mpsession_hard_reset_mark"


@dataclass
class Reply:
    """The outcome of one checked exchange (see :meth:`Communicator.run`).

    ``output``: what the code printed (bytes as the board sent them, up to the output
    limit); ``traceback``: its uncaught exception as the board printed it (empty when none);
    ``status``: ``"."`` ended, ``"x"`` ended by ``SystemExit``, ``"e"`` raised;
    ``records``: the result records (board ``repr`` texts, each checked); ``dropped``: bytes
    of output left out (beyond the limit); ``exchanges``: exchanges it took (pieces, resends).
    """

    output: bytes = b""
    traceback: bytes = b""
    status: str = "."
    records: list[bytes] = field(default_factory=list)
    dropped: int = 0
    exchanges: int = 0


class _Capture:
    """An exchange's output, bounded: the start and the end are kept, the middle counted."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        head_room = min(_OUTPUT_HEAD, self.limit // 2) - len(self.head)
        if head_room > 0:
            self.head += data[:head_room]
            data = data[head_room:]
        self.tail += data
        over = len(self.head) + len(self.tail) - self.limit
        if over > 0:
            del self.tail[:over]
            self.dropped += over

    def value(self) -> bytes:
        return bytes(self.head + self.tail)

    def last(self, n: int = 60) -> bytes:
        return bytes((self.head + self.tail)[-n:])


class _TooBig(Exception):
    """Internal: the board had no memory to take in a piece of code (nothing of it ran)."""


@dataclass
class _Raw:
    """One exchange as it came: output, error output, how it ended."""

    out: _Capture
    err: bytes = b""
    finished: ExecFinished | None = None
    rejected: bool = False


@dataclass
class _Exchange:
    """An exchange whose code went out and whose reply is being read (see
    :meth:`Communicator._send` and :meth:`Communicator._pump`)."""

    raw: _Raw
    deadline: float
    stream: bytes = b""
    started: bool = False
    per_byte: float = 0.0
    ack_by: float = 0.0
    stream_by: float = 0.0
    #: boot text seen: when the silence after it proves a reboot
    quiet_until: float = 0.0
    #: the latest stdout/stderr, to tell boot text from output
    tail: bytes = b""
    err: list[bytes] = field(default_factory=list)


@dataclass
class _Ahead:
    """A checked exchange sent ahead (see :meth:`Communicator.run_ahead`): the code runs on
    the board, its reply waits for the :meth:`Communicator.run` that claims it."""

    code: str
    n: int
    exchange: _Exchange
    limit: float
    #: what makes it still the board's current exchange: the exchange count and resets
    exchanges: int
    reset_count: int
    #: when run_ahead() returned (the host's own time starts)
    left: float = 0.0

    def resume(self, limit: float) -> None:
        """Take the exchange up again after the host was away: the time it was away is not
        the board's (its reply, or its code's acknowledgement, waits unread meanwhile, and a
        board printing much waits on the host too), so the protocol's waits are pushed back
        by it and the code gets at least ``limit`` from now, as a call sent now would."""
        now = time.monotonic()
        away = max(0.0, now - self.left)
        ex = self.exchange
        ex.deadline = max(ex.deadline, now + limit)
        ex.ack_by += away
        if ex.stream_by:
            ex.stream_by += away
        if ex.quiet_until:
            ex.quiet_until += away


_FRAME_LINE = re.compile(rb'^  File "[^"]*", line \d+, in (\S+)', re.M)


def _store_line(code: str) -> str:
    """The raw-REPL line that keeps ``code`` as a string in ``__main__`` (``_mpsq``) for a
    stored exchange. A byte lost in the name would keep it under another one, for good:
    the names one lost byte makes of ``_mpsq`` are removed first, each time."""
    return f"[globals().pop(n,0) for n in {_STORE_DAMAGED!r}]\n_mpsq={code!r}"


#: what one lost byte makes of the name ``_mpsq``
_STORE_DAMAGED: Final = ("mpsq", "_psq", "_msq", "_mpq", "_mps")


def _wire_stored(n: int, code: str, key: int, op: int, algo: str) -> bytes:
    """The raw-REPL line of a checked exchange whose code was stored on the board before
    (``_mpsq``, see ``Communicator._store``): taken out of ``__main__`` and checked by the
    wrapper as a literal would be."""
    check = checksum(code.encode("utf-8", "surrogateescape"), n + 16 * key + op, algo)
    return f"_mpsx({n},{check},globals().pop('_mpsq',''),{key},{op})".encode()


def _compile_failed(err: bytes) -> bool:
    """Whether a traceback is a MemoryError raised in the wrapper itself, where it compiles
    the code (no frame of the code's own: none of it ran)."""
    frames = _FRAME_LINE.findall(err)
    return b"MemoryError" in err and bool(frames) and frames[-1] == b"_mpsx"


def _text(code: str | bytes) -> str:
    return code if isinstance(code, str) else bytes(code).decode("utf-8", "surrogateescape")


class Communicator(Recovery):
    """The raw-REPL conversation with one board: what every layer above talks through.

    ``raw_paste``: None (the default) uses raw-paste for code above 256 bytes when the board
    has it (learnt on the first try and remembered) and plain raw mode for shorter code;
    True forces raw-paste (still falling back on boards without it), False plain raw mode.
    ``plain_chunk_pause`` paces plain raw writes of long code (256 bytes, then a pause during
    which the link is read) for boards whose UART buffer would overflow.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float = 10.0,
        raw_paste: bool | None = None,
        plain_chunk_pause: float = 0.01,
    ) -> None:
        """Wrap an open transport; :meth:`open` also enters the raw REPL."""
        self.port = transport.port
        self.timeout = timeout
        self._force_paste = raw_paste
        # None until an exec tried raw-paste; forced plain raw mode never tries.
        self.raw_paste: bool | None = False if raw_paste is False else None
        self.plain_chunk_pause = plain_chunk_pause
        #: how long a faulted board gets to come back (every escalation step together)
        #: before the call's error says recovery failed
        self.recovery_timeout = RECOVERY_TIMEOUT
        self.lock = threading.RLock()
        self.reset_count = 0
        #: raw-REPL exchanges started so far (each run of code on the board, checked or
        #: not): a caller that left state on the board knows nothing ran since it looked
        self.exchanges = 0
        #: why the board is unusable (a failed recovery), or None; see :meth:`recover`
        self.broken: str | None = None
        #: the last recovery made (by a failed call or by :meth:`recover`), or None
        self.last_recovery: RecoveryReport | None = None
        self._transport = transport
        self._engine = RawReplClient()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False
        self._armed = False  # the RAM marker is set in the board's current RAM
        self._watch = False  # no code of ours runs: boot text means the board rebooted
        self._tail = bytearray()  # the latest bytes received (boot text, error messages)
        #: code longer than this goes in pieces cut between top-level statements (the
        #: session manager sizes it to the board's free memory)
        self.piece_size = PIECE_SIZE
        self._auto_pieces = True  # piece_size follows the board's free memory
        #: the board's free memory when the wrapper was last installed (None: not yet)
        self.free_at_install: int | None = None
        #: output kept per call (bytes); beyond it the middle is dropped and counted
        self.output_limit = OUTPUT_LIMIT
        #: bytes the board-side wrapper keeps free between exchanges (see protocol.frame)
        self.reserve = RESERVE
        self._stream_rejects = 0  # streamed code that arrived damaged
        #: checked exchanges sent again because they arrived damaged and did not run
        self.resent = 0
        self._algo = "c"  # the board's checksum: crc32 ("c") or the pure-Python sum ("a")
        self._numbers = itertools.count(random.randrange(1, 1 << 20))
        self._ahead: _Ahead | None = None
        # a call was waiting on running code when something not the board's (Ctrl-C,
        # pytest-timeout) took the host away: close() stops it (see _pump)
        self._abandoned = False

    @classmethod
    def open(
        cls,
        port: str,
        *,
        baudrate: int = 115200,
        timeout: float = 10.0,
        raw_paste: bool | None = None,
        exclusive: bool = True,
    ) -> Communicator:
        """Open ``port``, interrupt whatever runs and enter the raw REPL within ``timeout``.

        Entering escalates when the board does not answer: the interrupt and Ctrl-A are
        resent, then a soft reset (Ctrl-D) is tried, then the port is reopened; opening never
        pulses the reset line. DeviceConnectionError naming the port when it cannot be opened
        or the board does not answer the raw REPL
        (:class:`~pytest_mpsession.boardlock.BoardBusyError` when another run holds it).
        """
        transport = Transport.open(port, baudrate=baudrate, timeout=timeout, exclusive=exclusive)
        comm = cls(transport, timeout=timeout, raw_paste=raw_paste)
        try:
            with comm.lock:
                transport.discard_input()
                report = comm._bring_back(timeout, OPEN_STEP_SHARE, verify=False)
                if not report.recovered:
                    raise DeviceConnectionError(
                        f"no raw REPL answer from {port} within {timeout:g} s: "
                        + comm._chatter_hint(),
                        port=port,
                    )
                comm._arm_quietly(time.monotonic() + timeout)
        except BaseException:
            transport.close()
            raise
        return comm

    # -- the I/O loop ---------------------------------------------------------------------

    def _take(self, data: bytes) -> None:
        """Feed bytes from the board to the engine, keeping the latest for diagnosis."""
        tail = self._tail
        tail += data
        if len(tail) > TAIL:
            del tail[: len(tail) - TAIL]
        self._engine.receive_data(data)
        if self._watch and looks_rebooted(bytes(tail)):
            tail.clear()  # seen once
            raise Rebooted

    def _write(self, data: bytes) -> None:
        """Write, pacing plain raw code: after each chunk while more are to come, a pause
        during which the board drains its UART buffer. A read, not a sleep: anything the
        board says meanwhile is taken in."""
        transport = self._transport
        transport.write(data)
        eng = self._engine
        paced = eng.raw_chunks_pending or (eng.stream_pending and self.raw_paste is not True)
        if self.plain_chunk_pause > 0 and paced:
            pause_end = time.monotonic() + self.plain_chunk_pause
            while time.monotonic() < pause_end:
                received = transport.read_some(pause_end)
                if received:
                    self._take(received)

    def _next_event(self, deadline: float) -> Event | None:
        """The next event from the board, or None when the deadline passes first."""
        eng = self._engine
        transport = self._transport
        while True:
            ev = eng.next_event()
            # Parsing can make bytes sendable (a raw-paste window opening, an abort to
            # acknowledge): send them before returning or blocking.
            out = eng.data_to_send()
            while out:
                self._write(out)
                out = eng.data_to_send()
            if not isinstance(ev, NeedData):
                return ev
            if eng.has_input:
                continue  # bytes taken in while pacing
            if time.monotonic() >= deadline:
                return None  # a board that never stops talking still ends at the deadline
            data = transport.read_some(deadline)
            if not data:
                return None
            self._take(data)

    def _wait_for(self, kind: type[Event], deadline: float) -> bool:
        """Read until an event of ``kind``; False at the deadline."""
        while True:
            ev = self._next_event(deadline)
            if ev is None:
                return False
            if isinstance(ev, kind):
                return True

    def _enter(self, deadline: float, timeout: float) -> None:
        """Interrupt and enter the raw REPL (retrying), resynchronising if retried.
        ``NoAnswer`` at the deadline; a broken link raises DeviceConnectionError."""
        eng = self._engine
        tries = 0
        reboots = 0
        while True:
            tries += 1
            self._write(eng.enter_raw_repl())
            # (a byte of the request lost on the way: asked again within a third of the
            # time left, so a short recovery step still gets its retries)
            left = deadline - time.monotonic()
            retry_at = min(deadline, time.monotonic() + min(ENTER_RETRY, max(0.1, left / 3)))
            self._watch = reboots < 3
            entered = False
            try:
                entered = self._wait_for(RawReplEntered, retry_at)
            except ProtocolError:  # pragma: no cover - entering accepts any chatter
                pass
            except Rebooted:
                # The board (re)booted to its prompt meanwhile, and may have missed the
                # Ctrl-A: ask again now rather than at the next retry.
                reboots += 1
                continue
            finally:
                self._watch = False
            if not entered:
                if time.monotonic() >= deadline:
                    raise NoAnswer(
                        f"no raw REPL answer from {self.port} within {timeout:g} s: "
                        + self._chatter_hint(),
                        port=self.port,
                    )
                continue
            if tries > 1:
                # An earlier enter may still be answered: skip everything up to a marker.
                try:
                    self._sync(deadline, timeout)
                except Rebooted:
                    reboots += 1
                    if reboots >= 3:
                        raise KeepsRebooting(
                            f"no raw REPL answer from {self.port} within {timeout:g} s: "
                            "the board keeps rebooting",
                            port=self.port,
                        ) from None
                    continue
            return

    def _sync(self, deadline: float, timeout: float) -> None:
        """Run the engine's marker program and skip everything before its output
        (:class:`Rebooted` when the board reboots instead)."""
        self._write(self._engine.sync())
        self._watch = True
        try:
            synced = self._wait_for(Synced, deadline)
        finally:
            self._watch = False
        if not synced:
            raise NoAnswer(
                f"no raw REPL answer from {self.port} within {timeout:g} s: "
                "the board entered the raw REPL but then stopped answering",
                port=self.port,
            )

    def _chatter_hint(self) -> str:
        chatter = bytes(self._tail) or self._engine.recent_input
        if not chatter:
            return (
                "it sent nothing (is it powered and running MicroPython, and is the baudrate "
                "right?)"
            )
        if b"already in use" in chatter or b"Port already" in chatter:
            # ser2net's answer to a second client (max-connections: 1)
            return (
                "board busy: the network serial server refused this client, another one is "
                f"connected ({chatter[-60:]!r}); wait for that run to end, or use another board"
            )
        return (
            f"it sent {chatter[-60:]!r} but never the raw-REPL banner (a device that is not "
            "MicroPython, a wrong baudrate, or a program that catches KeyboardInterrupt)"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceConnectionError(f"{self.port}: the communicator is closed", port=self.port)

    def _check_usable(self) -> None:
        self._check_open()
        if self.broken is not None:
            err = BoardBrokenError(
                f"{self.port}: the board is broken ({self.broken}); power-cycle or replug it, "
                "then call recover()",
                port=self.port,
            )
            err.fault = "broken"
            err.recovery = self.last_recovery
            raise err

    def _ensure_ready(self, deadline: float, timeout: float) -> None:
        """Back at an idle raw-REPL prompt, taking in whatever arrived while idle.

        A board that rebooted or whose link dropped while idle is brought back first (its
        reset counted): nothing of the coming call was sent yet, so it can still run.
        """
        eng = self._engine
        if eng.state is State.READY:
            try:
                data = self._transport.read_available()
            except DeviceConnectionError as exc:
                self._come_back_before_call("disconnect", str(exc), timeout)
                return
            if data:
                self._take(data)  # a stray print while idle: Stray events, dropped
                while not isinstance(eng.next_event(), NeedData):
                    pass
                if looks_rebooted(bytes(self._tail)) or b"soft reboot" in data:
                    self._come_back_before_call("reset", f"it printed {data[-60:]!r}", timeout)
            return
        if eng.state in RUNNING:
            # Code left running (exec_no_follow): stop it, keeping time for a full enter.
            if self._stop_running(time.monotonic() + (deadline - time.monotonic()) / 2):
                return
        try:
            self._enter(deadline, timeout)
        except NoAnswer:
            raise
        except DeviceConnectionError as exc:
            self._come_back_before_call("disconnect", str(exc), timeout)

    def _come_back_before_call(self, kind: str, detail: str, timeout: float) -> None:
        """Recover between calls; raise (typed) only when the board does not come back."""
        report = self._recover_now(kind)
        if not report.recovered:
            raise self._fault_error(Fault(kind, detail), report, timeout)

    def _stop_running(self, deadline: float) -> bool:
        """Ctrl-C until the running code ends; False at the deadline.

        A Ctrl-C that arrives before the board armed its interrupt character (just after
        "OK") is read as input and lost, so it is sent again every INTERRUPT_RETRY seconds.
        """
        eng = self._engine
        try:
            while True:
                self._write(eng.interrupt())
                step = min(deadline, time.monotonic() + INTERRUPT_RETRY)
                if self._wait_for(ExecFinished, step):
                    return True
                if time.monotonic() >= deadline:
                    return False
        except ProtocolError:
            return False

    # -- exec -----------------------------------------------------------------------------

    def _use_paste(self, code: bytes) -> bool:
        if self._force_paste is not None:
            return self._force_paste
        return self.raw_paste is not False and len(code) > SMALL_CODE

    def _arm(self, deadline: float) -> None:
        """Install the wrapper (and the RAM marker) in the board's current RAM, once per
        board life."""
        if not self._armed:
            self._install(deadline)

    def _arm_quietly(self, deadline: float) -> None:
        """Arm right away (so the first call is one round trip); a failure is left for the
        next call to meet."""
        try:
            self._arm(deadline)
        except (Fault, DeviceConnectionError, ProtocolError):
            self._engine.enter_raw_repl()  # out of step: the next call resyncs

    def _install(self, deadline: float) -> None:
        """Install the checked-exchange wrapper (see :mod:`pytest_mpsession.protocol.frame`):
        the checksum as it is, proven by a test vector; then the wrapper in pieces, each run
        only when its checksum matches (:func:`~pytest_mpsession.protocol.frame.bootstrap`);
        then a proof exchange through every path of the wrapper. A damaged step is sent
        again; a wrapper that cannot be installed is a Fault."""
        self._armed = False
        problem = ""
        for _ in range(MAX_SENDS):
            out, err = self._unchecked(HASHER, deadline)
            mark = out.rfind(b"\x1e")
            answer, _, free = (out[mark + 1 :] if mark >= 0 else b"").strip().partition(b" ")
            algo = answer[:1].decode("ascii", "replace")
            if not err and algo in ("c", "a") and answer[1:].isdigit() and free.isdigit():
                if int(answer[1:]) == checksum(PROBE[0], PROBE[1], algo):
                    self._algo = algo
                    self.free_at_install = int(free)
                    reserve = max(0, min(int(self.reserve), int(free) // 6))
                    if self._auto_pieces:
                        # pieces the board can compile beside what it holds: compiling
                        # takes 4-5 times the source (measured on legacy and the micro:bit)
                        self.piece_size = max(512, min(int(free) // 6, PIECE_SIZE))
                    break
            problem = f"the checksum answered {(out + err)[-60:]!r}"
        else:
            raise Fault("noise", f"the checked-exchange wrapper could not be installed ({problem})")
        source = WRAPPER.replace("{reserve}", str(reserve))
        for piece in split_statements(source, _INSTALL_PIECE, gc=True):
            self._bootstrap(piece, deadline)
        for _ in range(MAX_SENDS):
            # The proof runs every path of the wrapper: a result record, an exception and
            # the trailer.
            proof = "_mps_r(7)\n1/0"
            raw = self._run(wire(0, proof, 0, OP_NORECORD, self._algo), deadline, frame=token(0))
            fin = raw.finished
            if fin is not None and fin.status == "e" and b"ZeroDivisionError" in raw.err:
                try:
                    _output, records = parse_records(raw.out.value(), fin.records, self._algo)
                except ValueError:
                    records = []
                if records == [b"7"]:
                    self._armed = True
                    return
            problem = "the proof exchange failed" + (" (rejected)" if raw.rejected else "")
        raise Fault("noise", f"the checked-exchange wrapper could not be installed ({problem})")

    def _bootstrap(self, code: str, deadline: float) -> None:
        """Run board code of the package's own (in ``__main__``) only when it arrived intact:
        sent again until the board confirms it ran (it is idempotent)."""
        problem = ""
        short = 0  # times the board had no memory for it
        # a long piece on a link that loses bytes needs many tries (each is one round trip)
        for _ in range(BOOTSTRAP_SENDS):
            out, err = self._unchecked(bootstrap(code, self._algo), deadline)
            if (not err and out.endswith(BOOTSTRAPPED)) or BOOTSTRAPPED + b"\r\n" in out[-8:]:
                return
            if not err and BOOTSTRAPPED + b"\n" in out[-8:]:
                return
            problem = repr((out + err)[-80:])
            exc_type, _message = parse_traceback(err.decode("utf-8", "replace"))
            if exc_type == "MemoryError":
                # what the failed try allocated is garbage now: collected, the piece may
                # find its block (a small board's heap is fragmented); then given up
                short += 1
                if short > _MEMORY_RETRIES:
                    break
                self._unchecked(GC_LINE, deadline)
                continue
            if _WRAPPER_GONE.search(err):
                raise Fault("reset", "the board's RAM was lost (its wrapper is gone)")
        raise Fault("noise", f"board code could not be installed intact ({problem})")

    def install_code(self, code: str, timeout: float | None = None) -> None:
        """Run board code of the package's own in ``__main__`` (helper definitions: they
        must be idempotent), sent again until it ran, and run only when it arrived intact:
        its checksum is checked on the board before it compiles (it travels as a literal,
        so the board holds it twice meanwhile: the pieces are kept small, see
        ``session/board.py``). MpSessionError when the board cannot take it (its message is
        the board's, e.g. a MemoryError)."""
        with self.lock:
            limit = self._limit(timeout)
            deadline = self._begin(limit)
            try:
                self._arm(deadline)
                self._bootstrap(code, deadline)
            except Fault as fault:
                if "could not be installed" in fault.detail and "MemoryError" in fault.detail:
                    raise MpSessionError(f"{self.port}: {fault.detail}") from None
                if "could not be installed" in fault.detail:
                    fault.ran = False  # damaged each time: it never ran
                report = self._recover_now(fault.kind)
                raise self._fault_error(fault, report, limit) from None

    def _unchecked(self, code: str, deadline: float) -> tuple[bytes, bytes]:
        """Run ``code`` as it is (no wrapper): ``(stdout, stderr)``, or :class:`Fault`.
        Only for the package's own code whose answer checks itself: noise before the
        reply is skipped, and an exchange the noise broke anyway, or the board did not
        acknowledge (its end byte lost on the way), is tried again."""
        data = code.encode("utf-8", "surrogateescape")
        for attempt in range(3):
            try:
                raw = self._run(data, deadline, skip_noise=True)
                return raw.out.value(), raw.err
            except Fault as fault:
                again = fault.kind in ("noise", "lost")
                if not again or attempt == 2 or time.monotonic() >= deadline:
                    raise
                try:
                    self._enter(deadline, max(0.0, deadline - time.monotonic()))
                except NoAnswer as exc:
                    raise Fault("timeout", str(exc)) from None
                except DeviceConnectionError as exc:
                    raise Fault("disconnect", str(exc), exc) from None
                if self._armed and self._ram_lost(deadline):
                    # the noise was the board rebooting: its RAM (the wrapper) is gone
                    raise Fault("reset", "the board rebooted") from None
        raise AssertionError("unreachable")

    def _ram_lost(self, deadline: float) -> bool:
        """Whether the RAM marker is gone (False when the answer is unclear)."""
        try:
            raw = self._run(RAM_CHECK.encode(), deadline, skip_noise=True)
        except Fault:
            return False
        return raw.out.value().strip() == RAM_MARK.encode() + b" False"

    def _line_rate(self) -> float:
        """Bytes per second the link carries (the slower of the port's baud rate and an
        emulated board's own ``baudrate=`` option)."""
        baud = float(getattr(self._transport, "baudrate", 0) or 115200)
        if "baudrate=" in self.port:
            try:
                baud = min(baud, float(self.port.split("baudrate=")[1].split("&")[0]))
            except ValueError:
                pass
        return max(baud, 300.0) / 10

    def _run(
        self,
        data: bytes,
        deadline: float,
        on_stdout: Callable[[bytes], None] | None = None,
        *,
        follow: bool = True,
        frame: bytes = b"",
        skip_noise: bool = False,
        stream: bytes = b"",
    ) -> _Raw:
        """One exchange from an idle prompt, no recovery, or :class:`Fault` saying what went
        wrong (the board is then in an unknown state). A framed exchange (``frame``) must
        be acknowledged in time (see ACK_WAIT): otherwise Fault ``"lost"``."""
        ex = self._send(data, deadline, frame=frame, skip_noise=skip_noise, stream=stream)
        return self._pump(ex, on_stdout, follow=follow)

    def _send(
        self,
        data: bytes,
        deadline: float,
        *,
        frame: bytes = b"",
        skip_noise: bool = False,
        stream: bytes = b"",
    ) -> _Exchange:
        """Send an exchange's code (see :meth:`_run`); its reply is read by :meth:`_pump`."""
        self.exchanges += 1
        eng = self._engine
        # The package's own unframed code (skip_noise) must be acknowledged in time too: a
        # lost end byte leaves the board waiting for more code, and its sender tries again.
        ex = _Exchange(_Raw(_Capture(self.output_limit)), deadline, stream)
        ex.started = not frame and not skip_noise
        per_byte = 1.0 / self._line_rate()
        ex.per_byte = per_byte
        paced = 0.0 if self._use_paste(data) else self.plain_chunk_pause * (len(data) // 256)
        ex.ack_by = time.monotonic() + ACK_WAIT + 2 * len(data) * per_byte + paced
        self._tail.clear()
        try:
            self._write(
                eng.exec(
                    data,
                    raw_paste=self._use_paste(data),
                    frame=frame,
                    skip_noise=skip_noise,
                    stream=stream,
                )
            )
        except ProtocolError as exc:
            raise Fault("noise", str(exc), exc) from None
        except DeviceConnectionError as exc:
            raise Fault("disconnect", str(exc), exc) from None
        return ex

    def _pump(
        self,
        ex: _Exchange,
        on_stdout: Callable[[bytes], None] | None = None,
        *,
        follow: bool = True,
    ) -> _Raw:
        """Read an exchange's reply until it ended (or, not ``follow``, until the board
        runs the code, its stream sent), sending what the protocol asks for on the way.

        Left by an exception not the board's (KeyboardInterrupt, pytest-timeout's), the
        code a call waited on is marked abandoned: :meth:`close` stops it, as nobody will
        read its reply (code sent not to be followed is left running once it runs, as
        asked; code sent ahead is stopped by close() unless claimed)."""
        self._abandoned = True
        raw = self._read_reply(ex, on_stdout, follow=follow)
        self._abandoned = False
        return raw

    def _read_reply(
        self,
        ex: _Exchange,
        on_stdout: Callable[[bytes], None] | None,
        *,
        follow: bool,
    ) -> _Raw:
        """:meth:`_pump`'s reading."""
        eng = self._engine
        raw = ex.raw
        deadline = ex.deadline
        stream = ex.stream
        per_byte = ex.per_byte
        try:
            while True:
                if eng.stream_unacked and not ex.stream_by:
                    ex.stream_by = (
                        time.monotonic()
                        + ACK_WAIT
                        + 2 * len(stream) * per_byte
                        + self.plain_chunk_pause * (len(stream) // 256)
                    )
                elif not eng.stream_unacked:
                    ex.stream_by = 0.0
                wait = deadline if ex.started else min(deadline, ex.ack_by)
                if ex.stream_by:
                    wait = min(wait, ex.stream_by)
                quiet_until = ex.quiet_until
                ev = self._next_event(min(wait, quiet_until) if quiet_until else wait)
                if ev is None:
                    if quiet_until and time.monotonic() < deadline:
                        raise Fault("reset", f"it printed {ex.tail[-80:]!r} instead of the reply")
                    if (not ex.started or ex.stream_by) and time.monotonic() < deadline:
                        raise Fault("lost", "the board did not acknowledge the code")
                    fault = Fault("timeout", "no answer")
                    fault.printed = raw.out.total
                    fault.tail = raw.out.last()
                    raise fault
                if isinstance(ev, Stdout | Stderr):
                    if isinstance(ev, Stdout):
                        raw.out.add(ev.data)
                        if on_stdout is not None:
                            on_stdout(ev.data)
                    else:
                        ex.err.append(ev.data)
                    ex.tail = (ex.tail + ev.data)[-TAIL:]
                    rebooted = looks_rebooted(ex.tail)
                    ex.quiet_until = time.monotonic() + REBOOT_QUIET if rebooted else 0.0
                elif isinstance(ev, ExecFinished):
                    raw.err = b"".join(ex.err)
                    raw.finished = ev
                    return raw
                elif isinstance(ev, ExecStarted):
                    ex.started = True
                    if not follow and not stream:
                        return raw
                elif isinstance(ev, CodeRejected):
                    raw.rejected = True
                elif isinstance(ev, CodeRequested):
                    # the stream went out (the stream's own deadline starts at the top)
                    if not follow:
                        return raw
                elif isinstance(ev, RawPasteAccepted):
                    self.raw_paste = True
                elif isinstance(ev, RawPasteRefused):
                    self.raw_paste = False
        except ProtocolError as exc:
            raise Fault("noise", str(exc), exc) from None
        except DeviceConnectionError as exc:
            raise Fault("disconnect", str(exc), exc) from None

    def _begin(self, limit: float) -> float:
        """Start a call: the board usable and at an idle prompt; returns the deadline."""
        self._check_usable()
        deadline = time.monotonic() + limit
        try:
            self._ensure_ready(deadline, limit)
        except NoAnswer as exc:
            fault = Fault("timeout", str(exc))
            report = self._recover_now(fault.kind)
            raise self._fault_error(fault, report, limit) from None
        return deadline

    def _call(
        self,
        data: bytes,
        limit: float,
        on_stdout: Callable[[bytes], None] | None = None,
        *,
        follow: bool = True,
    ) -> tuple[bytes, bytes]:
        """An unchecked exchange with everything around it: ready the board, run, and after
        a fault recover the board and raise the error that says what happened."""
        with self.lock:
            deadline = self._begin(limit)
            try:
                self._arm(deadline)
                raw = self._run(data, deadline, on_stdout, follow=follow)
                return raw.out.value(), raw.err
            except Fault as fault:
                report = self._recover_now(fault.kind)
                raise self._fault_error(fault, report, limit) from None

    def _limit(self, timeout: float | None) -> float:
        limit = self.timeout if timeout is None else timeout
        if not isinstance(limit, int | float) or isinstance(limit, bool) or not limit > 0:
            raise ValueError(
                f"timeout must be a number of seconds above 0, got {limit!r} (None for the default)"
            )
        return float(limit)

    def run(
        self,
        code: str,
        *,
        key: int = 0,
        op: int = 0,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> Reply:
        """Run ``code`` checked (see :mod:`pytest_mpsession.protocol.frame`) in namespace
        ``key`` (0: the board's ``__main__``; any other int: a namespace of its own, made on
        first use, where ``__name__ == "__main__"``), executing it (``op`` 0) or evaluating
        it (``OP_EVAL``: its value is the one result record).

        Code longer than :attr:`piece_size` goes in pieces cut between top-level
        statements, run one after the other until one raises or exits (a piece the board
        has no memory to compile is cut smaller). A damaged exchange that did not run is
        sent again; the errors of :meth:`exec_raw` otherwise. The board's own exception is
        not raised: see :attr:`Reply.status`."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        limit = self._limit(timeout)
        reply = Reply()
        capture = _Capture(self.output_limit)
        with self.lock:
            ahead = self._take_ahead()
            if ahead is not None and ahead.code == code and not key and not op:
                # sent by run_ahead(): its reply is this call's (with at least this call's
                # time limit from now: the host's time away is not the board's)
                ahead.resume(limit)
                end = ahead.exchange.deadline
                return self._checked(code, 0, 0, end, limit, on_stdout, ahead=ahead)
            deadline = self._begin(limit)  # an ahead exchange not claimed is stopped here
            size = max(int(self.piece_size), 256)
            if op & OP_EVAL or len(code) <= size:
                try:
                    # one piece (the usual call): its reply is the call's
                    return self._checked(code, key, op, deadline, limit, on_stdout)
                except _TooBig:
                    todo: list[str] = []
                    one = self._cut(code, todo, key, op, deadline, limit, on_stdout, capture)
                    if one is not None:
                        return one
            else:
                todo = split_statements(code, size)
            while todo:
                piece = todo.pop(0)
                try:
                    one = self._checked(piece, key, op, deadline, limit, on_stdout)
                except _TooBig:
                    one = self._cut(piece, todo, key, op, deadline, limit, on_stdout, capture)
                    if one is None:
                        continue
                capture.add(one.output)
                capture.dropped += one.dropped
                reply.exchanges += one.exchanges
                reply.records = one.records
                reply.traceback = one.traceback
                reply.status = one.status
                if one.status != ".":
                    break
        reply.output = capture.value()
        reply.dropped = capture.dropped
        return reply

    def run_ahead(self, code: str, timeout: float | None = None) -> bool:
        """Send ``code`` to run checked in ``__main__`` and return as soon as the board runs
        it, so that the board works while the host does something else: the next
        :meth:`run` (or :meth:`exec_raw`) of the same code in ``__main__`` reads its reply
        instead of sending it again, with the checks, resends and errors of any call (its
        timeout counted from now, and at least the claiming call's own from the claim: the
        time the host is away is not the board's). Any other call first stops it (Ctrl-C, as after
        :meth:`exec_no_follow`), and a later :meth:`run` of the code runs it again.

        Returns whether it was sent. Nothing is sent for code that would go in pieces, or
        while the board is not usable; a fault while
        sending is recovered from here and left unsaid (False): the call that needs the
        board meets what is left of it."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        limit = self._limit(timeout)
        with self.lock:
            self._ahead = None
            if len(code) > self.piece_size:
                return False
            try:
                deadline = self._begin(limit)
            except MpSessionError:
                return False
            try:
                self._arm(deadline)
                n = next(self._numbers) % (1 << 24) or 1
                if self._streams(code, 0):
                    line, stream = wire_streamed(n, code, 0, 0, self._algo)
                else:
                    line, stream = wire(n, code, 0, 0, self._algo), b""
                exchange = self._send(line, deadline, frame=token(n), stream=stream)
                self._pump(exchange, follow=False)
            except Fault as fault:
                self._recover_now(fault.kind)
                return False
            if exchange.raw.finished is not None or exchange.raw.rejected:
                return False  # not running (a damaged line): the claiming run() sends it
            self._ahead = _Ahead(
                code, n, exchange, limit, self.exchanges, self.reset_count, time.monotonic()
            )
            return True

    def _take_ahead(self) -> _Ahead | None:
        """The exchange sent ahead, if it is still the board's current one (forgotten
        either way)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or self._closed or self.broken is not None:
            return None
        if ahead.exchanges != self.exchanges or ahead.reset_count != self.reset_count:
            return None
        if self._engine.state not in RUNNING:
            return None
        return ahead

    def _cut(
        self,
        piece: str,
        todo: list[str],
        key: int,
        op: int,
        deadline: float,
        limit: float,
        on_stdout: Callable[[bytes], None] | None,
        capture: _Capture,
    ) -> Reply | None:
        """A piece the board had no memory to take in: cut smaller (the pieces go first in
        ``todo``, None returned), or, a single statement, sent as it is (its reply)."""
        # and from now on, pieces this board can take
        self.piece_size = max(256, min(self.piece_size, len(piece) // 2))
        smaller = split_statements(piece, max(len(piece) // 2, 256))
        if (op & OP_EVAL or key) and len(smaller) < 2:
            raise self._device_error(
                b"MemoryError: the board has no memory for this code (even "
                b"cut at its top-level statements)\n",
                capture.value(),
            ) from None
        if len(smaller) < 2:
            # One statement too long to go checked in one exchange on this board: stored
            # first, then run checked (see _as_it_is). Its own namespace is the board's.
            return self._as_it_is(piece, deadline, limit, on_stdout, op)
        todo[:0] = smaller
        return None

    def _checked(
        self,
        code: str,
        key: int,
        op: int,
        deadline: float,
        limit: float,
        on_stdout: Callable[[bytes], None] | None,
        *,
        stored: bool = False,
        ahead: _Ahead | None = None,
    ) -> Reply:
        """One piece, checked, sent again while it arrives damaged and provably did not run
        (``stored``: in two exchanges, see :meth:`_as_it_is`; ``ahead``: its first send
        was :meth:`run_ahead`'s)."""
        sends = 0
        while True:
            sends += 1
            if sends > 1:
                self.resent += 1
            n = -1  # nothing sent yet
            stream = b""
            try:
                if ahead is not None:
                    n, exchange, ahead = ahead.n, ahead.exchange, None
                    stream = exchange.stream
                    raw = self._pump(exchange, on_stdout)
                else:
                    self._arm(deadline)
                    if stored:
                        self._store(code, deadline)
                    n = next(self._numbers) % (1 << 24) or 1
                    if stored:
                        line, stream = _wire_stored(n, code, key, op, self._algo), b""
                    elif self._streams(code, op):
                        line, stream = wire_streamed(n, code, key, op, self._algo)
                    else:
                        line, stream = wire(n, code, key, op, self._algo), b""
                    raw = self._run(line, deadline, on_stdout, frame=token(n), stream=stream)
                if raw.rejected and stream:
                    self._stream_rejects += 1
            except Fault as fault:
                if n > 0 and stream and fault.kind == "lost":
                    self._stream_rejects += 1  # the stream was lost on the way
                report = self._recover_now(fault.kind)
                if n < 0 and report.recovered and sends < MAX_SENDS:
                    continue  # it struck the wrapper's install: nothing of the call was sent
                if report.recovered and not report.ram_lost and fault.kind in ("noise", "lost"):
                    fault.ran = self._ran(n, deadline) if n > 0 else False
                    if fault.ran is False and sends < MAX_SENDS:
                        continue
                raise self._fault_error(fault, report, limit) from None
            fin = raw.finished
            assert fin is not None
            if raw.rejected and sends < MAX_SENDS:
                continue
            if fin.status is None and _WRAPPER_GONE.search(raw.err):
                # the wrapper is gone: the board's RAM was lost (it rebooted unseen)
                gone = Fault("reset", "the board's RAM was lost (its wrapper is gone)")
                report = self._recover_now(gone.kind)
                if report.recovered and not report.ram_lost:
                    # the same RAM (its marker is there): code removed the wrapper. It is
                    # sent again; a call whose own line met its absence (nothing printed,
                    # the call's name missing) did not run, and goes again too
                    self._armed = False
                    if not raw.out.total and b"'_mpsx'" in raw.err and sends < MAX_SENDS:
                        continue
                    gone = Fault("noise", "code removed the checked-exchange wrapper")
                raise self._fault_error(gone, report, limit)
            if fin.status is None:
                # The wrapper never framed a reply: the line did not compile or run (a damaged
                # line, or no memory to take it in), or the reply was cut short.
                exc_type, _ = parse_traceback(raw.err.decode("utf-8", "replace"))
                if exc_type == "MemoryError" and not raw.out.total:
                    # no memory to take the line in (or to start the wrapper): nothing ran
                    raise _TooBig
                ran = False if raw.rejected else self._ran(n, deadline)
                if ran is False and sends < MAX_SENDS:
                    continue
                damaged = Fault("noise", f"no framed reply (it printed {raw.err[-60:]!r})")
                damaged.ran = ran
                report = RecoveryReport(("interrupt",), True, False, 0.0)
                raise self._fault_error(damaged, report, limit)
            try:
                output, records = parse_records(raw.out.value(), fin.records, self._algo)
            except ValueError as exc:
                damaged = Fault("noise", str(exc))
                damaged.ran = True
                report = RecoveryReport(("interrupt",), True, False, 0.0)
                raise self._fault_error(damaged, report, limit) from None
            if fin.status == "e" and not output and _compile_failed(raw.err):
                # no memory to compile the code: none of it ran. The reserve the wrapper
                # took first may hold the one block the compiler needed: once more without
                if not op & OP_NORESERVE and sends < MAX_SENDS:
                    op |= OP_NORESERVE
                    continue
                raise _TooBig
            return Reply(output, raw.err, fin.status, records, raw.out.dropped, sends)

    def _as_it_is(
        self,
        code: str,
        deadline: float,
        limit: float,
        on_stdout: Callable[[bytes], None] | None,
        op: int = 0,
    ) -> Reply:
        """``code``, one statement too long to go checked in one exchange on this board,
        in the board's ``__main__``: stored first as a string (``_mpsq``), then run by the
        checked wrapper from there (see :func:`_wire_stored`), so the board holds the
        source once while compiling, as for code sent as it is, and a byte lost on the way
        is still caught (sent as it is, a damaged statement could run and answer wrong:
        an empty file, a missing result). A board that cannot take even that: a
        MemoryError, never an unchecked run."""
        try:
            return self._checked(code, 0, op, deadline, limit, on_stdout, stored=True)
        except _TooBig:
            raise self._device_error(
                b"MemoryError: the board has no memory for this code (one statement, even "
                b"stored before it runs)\n"
            ) from None

    def _store(self, code: str, deadline: float) -> None:
        """Keep ``code`` as a string in the board's ``__main__`` (``_mpsq``), for a
        stored exchange; a damaged literal is sent again (its checksum is checked when it
        runs). _TooBig when the board has no memory for it."""
        problem = b""
        for _ in range(MAX_SENDS):
            self._unchecked(GC_LINE, deadline)
            _out, err = self._unchecked(_store_line(code), deadline)
            if not err:
                return
            problem = err[-80:]
            exc_type, _message = parse_traceback(err.decode("utf-8", "replace"))
            if exc_type == "MemoryError":
                raise _TooBig
        raise Fault("noise", f"the code could not be stored on the board ({problem!r})")

    def _streams(self, code: str, op: int) -> bool:
        """Whether ``code`` goes as it is through the wrapper's stdin (see
        protocol/frame.py): long code without the bytes a link treats as commands, unless
        streams kept arriving damaged on this board (its UART loses bytes)."""
        # Only boards with raw-paste: older firmware (and the emulated legacy board, whose
        # UART model drops what running code is sent) has no room to buffer a stream.
        # Only ASCII: the wrapper's stdin.read(n) counts characters on a board with unicode,
        # the host sends n bytes (the board waited for more, the stream was "lost" twice and
        # then streams were off for the board's life).
        return (
            len(code) >= STREAM_MIN
            and code.isascii()
            and self.raw_paste is True
            and not op & OP_EVAL
            and self._stream_rejects < 2
            and not any(ch in code for ch in "\x01\x02\x03\x04")
        )

    def _ran(self, n: int, deadline: float) -> bool | None:
        """Whether the wrapper started exchange ``n`` (None: no trustworthy answer)."""
        end = max(deadline, time.monotonic() + max(0.5, self.recovery_timeout * 0.2))
        for _ in range(6):
            try:
                out, _err = self._unchecked(RAN_QUERY, end)
            except Fault:
                try:
                    self._enter(end, max(0.1, end - time.monotonic()))
                except (DeviceConnectionError, ProtocolError):
                    return None
                continue
            got = parse_ran(out)
            if got is not None:
                return got == n
        return None

    def exec_raw(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> tuple[bytes, bytes]:
        """Run ``code``; ``(stdout, stderr)`` as bytes, without raising for the board's
        exception (stderr holds its traceback).

        DeviceTimeout after ``timeout`` seconds (the board is interrupted and usable again);
        when the board reset, hung, dropped off or sent noise instead of its reply, an error
        that says so (:class:`BoardResetError`, :class:`BoardHungError`,
        :class:`BoardDisconnectedError`, :class:`BoardNoiseError`), raised once the board was
        brought back (at most ``recovery_timeout`` more seconds). :class:`BoardBrokenError` at
        once while the board is broken. ValueError for a timeout that is not above 0.
        """
        reply = self.run(_text(code), timeout=timeout, on_stdout=on_stdout)
        self._check_dropped(reply)
        return reply.output, reply.traceback

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run ``code`` and return exactly what it printed (UTF-8 with ``surrogateescape``:
        ``out.encode("utf-8", "surrogateescape")`` is the board's bytes; line endings as the
        board sent them). ``SystemExit`` ends the code: its output is returned.

        DeviceError (with ``exc_type``, message, the board's traceback and ``output``, what
        was printed before) when the code raised; DeviceTimeout after ``timeout`` seconds,
        the board interrupted and usable; the errors of :meth:`exec_raw` when something
        happened to the board; :class:`OutputLimitError` when it printed more than
        :attr:`output_limit` (stream it with ``on_stdout``)."""
        reply = self.run(_text(code), timeout=timeout, on_stdout=on_stdout)
        out = reply.output.decode("utf-8", "surrogateescape")
        if reply.status == "e":
            raise self._device_error(reply.traceback, reply.output)
        self._check_dropped(reply)
        return out

    def _check_dropped(self, reply: Reply) -> None:
        if reply.dropped:
            raise OutputLimitError(
                f"{self.port}: the code printed {reply.dropped + len(reply.output):,} bytes, "
                f"more than the {self.output_limit:,} kept: {reply.dropped:,} bytes from the "
                "middle were dropped; pass on_stdout= to stream long output (or raise "
                "output_limit)",
                output=reply.output.decode("utf-8", "surrogateescape"),
                dropped=reply.dropped,
            )

    def eval(self, expr: str, timeout: float | None = None, *, key: int = 0) -> object:
        """The value of ``expr`` on the board (in namespace ``key``), as a Python literal (see
        :func:`parse_literal`: what the board prints is parsed, never evaluated on the host).
        ProtocolError saying to return a literal when the value has no literal form."""
        reply = self.run(expr, key=key, op=OP_EVAL, timeout=timeout)
        if reply.status != ".":
            raise self._device_error(reply.traceback or b"SystemExit\n", reply.output)
        value = reply.records[-1].decode("utf-8", "surrogateescape") if reply.records else ""
        try:
            return parse_literal(value)
        except ValueError:
            raise ProtocolError(
                f"eval({expr!r}) on {self.port}: the board's value {value[:80]!r} is not a "
                "literal (numbers, str, bytes, bytearray, lists, tuples, dicts, sets, None, "
                "bools); return one of those, or use exec() and print what you need"
            ) from None

    def exec_raw_unchecked(
        self, code: str | bytes, timeout: float | None = None
    ) -> tuple[bytes, bytes]:
        """Run ``code`` as it is, without the checked wrapper: ``(stdout, stderr)``. For
        code of the package's own whose damage shows as a SyntaxError (helper source on a
        board too small to hold it twice); never for user code."""
        data = code.encode() if isinstance(code, str) else bytes(code)
        return self._call(data, self._limit(timeout))

    def exec_no_follow(self, code: str | bytes, timeout: float | None = None) -> None:
        """Start ``code`` (unchecked) and return as soon as the board runs it, without
        waiting for it to end; the next call (or :meth:`interrupt`) stops it."""
        data = code.encode() if isinstance(code, str) else bytes(code)
        self._call(data, self._limit(timeout), follow=False)

    def _device_error(self, err: bytes, output: bytes = b"") -> DeviceError:
        text = err.decode("utf-8", "replace").replace("\r\n", "\n")
        exc_type, message = parse_traceback(text)
        return DeviceError(
            message,
            exc_type=exc_type,
            traceback=text,
            port=self.port,
            output=output.decode("utf-8", "surrogateescape"),
        )

    # -- control --------------------------------------------------------------------------

    def interrupt(self, timeout: float | None = None) -> None:
        """Stop whatever runs and be back at the raw-REPL prompt (escalating to a full
        :meth:`recover` when the board does not answer, or is broken)."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            deadline = time.monotonic() + limit
            eng = self._engine
            if eng.state is State.READY and self.broken is None:
                return
            if self.broken is None:
                try:
                    self._ensure_ready(deadline, limit)
                    return
                except (DeviceConnectionError, ProtocolError):
                    pass
            self.recover(min(limit, max(self.recovery_timeout, 0.0)))

    def soft_reset(self, timeout: float | None = None) -> None:
        """Ctrl-D: the board's RAM is gone (every variable); back in the raw REPL."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_usable()
            deadline = time.monotonic() + limit
            self._ensure_ready(deadline, limit)
            eng = self._engine
            try:
                self._write(eng.soft_reset())
                if not self._wait_for(SoftResetStarted, deadline):
                    self._enter(deadline, limit)  # it did not even say OK: resync first
                    raise DeviceConnectionError(
                        f"{self.port}: the board did not acknowledge a soft reset within "
                        f"{limit:g} s",
                        port=self.port,
                    )
                self.reset_count += 1
                self._armed = False
                if not self._wait_for(RawReplEntered, deadline):
                    # A board that came back quiet, or a boot.py that printed over the
                    # banner: ask again.
                    self._enter(time.monotonic() + self.recovery_timeout, self.recovery_timeout)
                self._arm_quietly(max(deadline, time.monotonic() + 1.0))
            except ProtocolError:
                self._resync_after_error()
                raise
        self._notify_reset()

    def _resync_after_error(self) -> None:
        """After a ProtocolError: get back to the prompt if possible, quietly."""
        try:
            self._enter(time.monotonic() + self.recovery_timeout, self.recovery_timeout)
        except (DeviceConnectionError, ProtocolError):
            pass

    def hard_reset(self, timeout: float | None = None) -> None:
        """Reset the board's hardware: an RTS pulse where it is wired to the reset line,
        otherwise ``machine.reset()``; then reopen the port until the board answers."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            if self.broken is not None:
                self.recover(limit)
            deadline = time.monotonic() + limit
            self._ensure_ready(deadline, limit)
            # A variable in RAM tells whether a reset really happened.
            self.exec(f"{_HARD_RESET_MARK}=1", timeout=limit)
            reset: bool | None = None
            if self._transport.pulse_reset():
                share = min(deadline, time.monotonic() + max(2.0, limit / 2))
                reset = self._came_back_reset(share, limit)
            if reset is not True:
                failure = self._machine_reset(deadline)
                if failure is not None:
                    raise DeviceConnectionError(
                        f"{self.port}: cannot hard-reset the board: its port has no reset line "
                        f"and machine.reset() failed ({failure})",
                        port=self.port,
                    )
                reset = self._came_back_reset(deadline, limit)
            if reset is False:
                raise DeviceConnectionError(
                    f"{self.port}: cannot hard-reset the board: its port has no reset line "
                    "and machine.reset() did not reset it",
                    port=self.port,
                )
            if reset is None:
                raise DeviceConnectionError(
                    f"{self.port}: the board did not come back from a hard reset within "
                    f"{limit:g} s",
                    port=self.port,
                )
            self.reset_count += 1
            self._armed = False
            self._arm_quietly(max(deadline, time.monotonic() + 1.0))
        self._notify_reset()

    def _machine_reset(self, deadline: float) -> str | None:
        """Run ``machine.reset()``; the board's error when it ran to its end instead of
        resetting, else None (the board is rebooting, or its port dropped)."""
        eng = self._engine
        # A reset shows as boot chatter ending at a prompt; an error as a normal exec end.
        wait_end = min(deadline, time.monotonic() + MACHINE_RESET_WAIT)
        seen = bytearray()
        err = bytearray()
        try:
            self._write(eng.exec(b"import machine\nmachine.reset()", raw_paste=False))
            while (ev := self._next_event(wait_end)) is not None:
                if isinstance(ev, ExecFinished):
                    exc_type, message = parse_traceback(err.decode("utf-8", "replace"))
                    return f"{exc_type}: {message}" if exc_type else "it returned"
                if isinstance(ev, Stderr):
                    err += ev.data
                elif isinstance(ev, Stdout):
                    seen += ev.data
                    if FRIENDLY_PROMPT in seen or RAW_REPL_BANNER in seen:
                        break
                    del seen[: -len(RAW_REPL_BANNER)]
        except (DeviceConnectionError, ProtocolError):
            pass  # the board is resetting: its port may vanish meanwhile
        return None

    def _came_back_reset(self, deadline: float, limit: float) -> bool | None:
        """Reconnect, reopening the port if it vanished: True if the board's RAM is new,
        False if the board answers with its RAM intact, None if it did not answer."""
        check = f"print('{_HARD_RESET_MARK}' in globals())"
        while True:
            try:
                self._enter(deadline, limit)
                out, _err = self._unchecked(check, deadline)
                return out.strip().endswith(b"False")
            except (DeviceConnectionError, Fault):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                try:
                    self._transport.reopen(remaining)
                except DeviceConnectionError:
                    return None

    def reconnect(self, timeout: float | None = None) -> None:
        """Reopen the port (retrying until it is back, as after a USB board dropped off the
        bus) and enter the raw REPL again. The board's RAM may or may not have survived:
        the RAM marker tells, and a lost RAM counts as a reset."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            deadline = time.monotonic() + limit
            self._transport.reopen(limit)
            self._enter(deadline, limit)
            if self._armed:
                try:
                    lost = self._verify(deadline)
                except Fault as fault:
                    raise DeviceConnectionError(
                        f"{self.port}: reconnected, but the board then failed: {fault.detail}",
                        port=self.port,
                    ) from None
                if lost:
                    self.reset_count += 1
                    self._notify_reset()
            self.broken = None

    def add_reset_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every reset this communicator makes or sees (RAM lost)."""
        self._listeners.append(callback)

    def _notify_reset(self) -> None:
        for callback in list(self._listeners):
            callback()

    def close(self) -> None:
        """Close the port (and its board lock), leaving the board as it is (nothing
        interrupted, no reset; only code that no call will read is stopped: sent ahead
        and not claimed, or a call's left when Ctrl-C took the host away from it)."""
        with self.lock:
            if not self._closed:
                abandoned = self._abandoned and self._engine.state in RUNNING
                if self._take_ahead() is not None or abandoned:
                    # code nobody will read the reply of: stopped, not left running
                    try:
                        self._stop_running(time.monotonic() + INTERRUPT_RETRY)
                    except (DeviceConnectionError, Rebooted):
                        pass
                self._closed = True
                self._transport.close()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "broken" if self.broken is not None else self._engine.state.value
        return f"<Communicator {self.port} {state}>"
