"""One board, spoken to through its raw REPL: ``exec``, ``eval``, interrupts and resets.

The thin I/O loop around :class:`~pytest_mpsession.protocol.engine.RawReplClient`: it writes
what the engine says, reads with deadlines (no polling: every wait is a blocking read that
ends when bytes arrive or the deadline passes) and turns the engine's events into return
values and errors. One :class:`threading.RLock` serializes whole exchanges, so callers on
several threads never interleave their bytes.

Recovery: a call that goes wrong (no answer, noise instead of the reply, the board's boot
text instead of the reply, the link dropping) ends in an error that says what happened to
the board, *after* the board was brought back to an idle raw-REPL prompt by
:meth:`Communicator.recover`, which escalates: interrupt (Ctrl-C, resync), soft reset
(Ctrl-D), the reset line (where the port has one), reopening the port (with a bounded
backoff, as a USB board re-enumerates). Whether the board's RAM survived is not guessed
from its chatter: a marker variable (``__mpsession_up``) set in the board's RAM says it. A lost
RAM counts as a reset (``reset_count`` and the reset listeners). When nothing brings the
board back, the communicator is *broken*: every later call fails at once with
:class:`BoardBrokenError` (no more timeouts to wait out) until :meth:`Communicator.recover`
succeeds.
"""

from __future__ import annotations

import ast
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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
    DeviceTimeout,
    ProtocolError,
)
from pytest_mpsession.protocol.constants import (
    CTRL_C,
    CTRL_D,
    FRIENDLY_PROMPT,
    RAW_REPL_BANNER,
    RAW_REPL_PROMPT,
)
from pytest_mpsession.protocol.engine import (
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
    "parse_literal",
    "parse_traceback",
]

# Code up to this size goes out in plain raw mode even when the board has raw-paste: it fits
# any board's UART buffer, and plain raw needs one round trip where raw-paste needs two.
SMALL_CODE: Final = 256
# How long a faulted board gets to come back, all escalation steps together (a USB board
# re-enumerating after a reset takes a second or two of it).
RECOVERY_TIMEOUT: Final = 5.0
# The share of a recovery's time each step gets before the next one is tried; reopening the
# port, the last step, gets whatever is left.
_STEP_SHARE: Final = {"interrupt": 0.35, "soft reset": 0.15, "reset line": 0.2}
# Opening never pulses the reset line (the API's promise) and waits longer for an interrupt:
# a board may be busy printing.
_OPEN_STEP_SHARE: Final = {"interrupt": 0.6, "soft reset": 0.2}
# Reopening the port when it is not the last step (the link dropped: reopen first).
_REOPEN_SHARE: Final = 0.5
# Escalation rounds at most: a second one when a fault struck the first round itself; and
# never more steps than this in one recovery.
_RECOVERY_ROUNDS: Final = 2
_MAX_STEPS: Final = 10
# After noise where a reply should start: how long the reply of the code (which the board
# most likely runs all the same) may take to end before the recovery interrupts it.
REPLY_END_WAIT: Final = 0.25
# Boot text arrived where the reply should be: this much silence after it confirms that the
# board rebooted (code that prints such text goes on printing or ends its reply).
REBOOT_QUIET: Final = 0.05
# The board-side marker of "this RAM is the one we talked to": set once per board life.
RAM_MARK: Final = "__mpsession_up"
_RAM_ARM: Final = RAM_MARK + "=1"
_RAM_CHECK: Final = f"print('{RAM_MARK}' in globals())"
# Printed right before an eval's repr, so prints of the expression itself (or noise before
# the reply) never mix into the value: the value is what follows the last marker.
_VALUE_MARK: Final = "\x1e"
# How much of the latest input is kept to recognise boot text and for error messages.
_TAIL: Final = 512
# What a rebooted board ends its chatter with: the raw-REPL banner (a soft reboot in the raw
# REPL), or the friendly prompt after a banner (a hard reset: brown-out, watchdog).
_BOOT_WORDS: Final = (b"MicroPython v", b'Type "help()"', b"soft reboot", b"rst:0x")
# While entering the raw REPL, the interrupt + Ctrl-A is sent again this often (bytes sent
# while a board boots are lost).
ENTER_RETRY: Final = 1.0
# How long machine.reset() gets to show either its error or the board's reboot.
MACHINE_RESET_WAIT: Final = 1.0
# A Ctrl-C is sent again this often until the running code stops.
INTERRUPT_RETRY: Final = 0.5
_RUNNING: Final = frozenset({State.STDOUT, State.STDERR, State.PROMPT})
_HARD_RESET_MARK: Final = "_mpsession_hard_reset_mark"

_TYPE_LINE = re.compile(r"([A-Za-z_][\w.]*)(?::[ ]?(.*))?\Z", re.S)
_INF: Final = float("inf")


def parse_traceback(text: str) -> tuple[str, str]:
    """``(exc_type, message)`` from a traceback as the board printed it.

    The exception line is the one after the last ``File`` line (the last line for a one-line
    message); MicroPython 1.9 has no ``type.__name__``, so the text is all there is.
    """
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    start = 0
    for i, line in enumerate(lines):
        if line.startswith(("Traceback (most recent call last)", "  File ")):
            start = i + 1
    rest = lines[start:] or lines[-1:]
    m = _TYPE_LINE.match(rest[0])
    if not m:
        return "", "\n".join(rest).strip()
    message = "\n".join([m.group(2) or "", *rest[1:]]).strip()
    return m.group(1), message


def parse_literal(text: str) -> object:
    """The Python value of a MicroPython ``repr``: literals only, never evaluated.

    ints, floats (``inf``, ``-inf``, ``nan`` too), complex, str, bytes, ``bytearray(b'..')``,
    lists, tuples, dicts, sets (``set()``), frozensets, None and booleans. ValueError for
    anything else.
    """
    src = text.strip()
    try:
        tree = ast.parse(src, mode="eval")
        return _literal(tree.body)
    except (SyntaxError, RecursionError, MemoryError, TypeError) as exc:
        raise ValueError(f"not a literal: {_short(src)} ({type(exc).__name__})") from None


def _short(text: str, limit: int = 80) -> str:
    return repr(text[:limit]) + ("..." if len(text) > limit else "")


def _literal(node: ast.expr) -> object:
    if isinstance(node, ast.Constant) and node.value is not Ellipsis:
        return node.value
    if isinstance(node, ast.Name) and node.id in ("inf", "nan"):
        return _INF if node.id == "inf" else math.nan
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _literal(node.operand)
        if isinstance(value, int | float | complex) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        # a complex repr: (1+2j), (-0-1j)
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(left, int | float) and isinstance(right, complex):
            return left + right if isinstance(node.op, ast.Add) else left - right
    if isinstance(node, ast.List):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.Set):
        return {_literal(e) for e in node.elts}
    if isinstance(node, ast.Dict):
        pairs = []
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:  # a ** expansion
                raise TypeError("dict expansion")
            pairs.append((_literal(key), _literal(value)))
        return dict(pairs)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        args = [_literal(a) for a in node.args]
        if node.func.id == "bytearray" and not args:
            return bytearray()
        if node.func.id == "bytearray" and len(args) == 1 and isinstance(args[0], bytes):
            return bytearray(args[0])
        if node.func.id == "set" and not args:
            return set()
        if node.func.id == "frozenset" and not args:
            return frozenset()
        if node.func.id == "frozenset" and len(args) == 1 and isinstance(args[0], set | list):
            return frozenset(args[0])
    raise TypeError(ast.dump(node)[:60])


# -- what happened to the board ---------------------------------------------------------


@dataclass(frozen=True)
class RecoveryReport:
    """What :meth:`Communicator.recover` did.

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


class _NoAnswer(DeviceConnectionError):
    """The board did not show the raw-REPL banner in time (the link itself works)."""


class _Rebooted(Exception):
    """Internal: boot text arrived while no code of ours runs (entering, syncing)."""


class _Fault(Exception):
    """Internal: an exchange went wrong; ``kind`` as in :attr:`BoardFault.fault`."""

    def __init__(self, kind: str, detail: str, cause: BaseException | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.cause = cause


def _looks_rebooted(tail: bytes) -> bool:
    """Whether ``tail`` (the latest bytes from the board) ends with a rebooted board's
    prompt: the raw-REPL banner after a soft reboot, or the friendly prompt after a banner."""
    if tail.endswith(RAW_REPL_BANNER + RAW_REPL_PROMPT):
        return b"soft reboot" in tail or b"MicroPython v" in tail
    if tail.endswith(FRIENDLY_PROMPT):
        return any(word in tail for word in _BOOT_WORDS)
    return False


class Communicator:
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
                report = comm._bring_back(timeout, _OPEN_STEP_SHARE, verify=False)
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
        if len(tail) > _TAIL:
            del tail[: len(tail) - _TAIL]
        self._engine.receive_data(data)
        if self._watch and _looks_rebooted(bytes(tail)):
            tail.clear()  # seen once
            raise _Rebooted

    def _write(self, data: bytes) -> None:
        """Write, pacing plain raw code: after each chunk while more are to come, a pause
        during which the board drains its UART buffer. A read, not a sleep: anything the
        board says meanwhile is taken in."""
        transport = self._transport
        transport.write(data)
        eng = self._engine
        if self.plain_chunk_pause > 0 and eng.raw_chunks_pending:
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
        ``_NoAnswer`` at the deadline; a broken link raises DeviceConnectionError."""
        eng = self._engine
        tries = 0
        reboots = 0
        while True:
            tries += 1
            self._write(eng.enter_raw_repl())
            retry_at = min(deadline, time.monotonic() + ENTER_RETRY)
            self._watch = reboots < 3
            entered = False
            try:
                entered = self._wait_for(RawReplEntered, retry_at)
            except ProtocolError:  # pragma: no cover - entering accepts any chatter
                pass
            except _Rebooted:
                # The board (re)booted to its prompt meanwhile, and may have missed the
                # Ctrl-A: ask again now rather than at the next retry.
                reboots += 1
                continue
            finally:
                self._watch = False
            if not entered:
                if time.monotonic() >= deadline:
                    raise _NoAnswer(
                        f"no raw REPL answer from {self.port} within {timeout:g} s: "
                        + self._chatter_hint(),
                        port=self.port,
                    )
                continue
            if tries > 1:
                # An earlier enter may still be answered: skip everything up to a marker.
                try:
                    self._sync(deadline, timeout)
                except _Rebooted:
                    reboots += 1
                    if reboots >= 3:
                        raise _NoAnswer(
                            f"no raw REPL answer from {self.port} within {timeout:g} s: "
                            "the board keeps rebooting",
                            port=self.port,
                        ) from None
                    continue
            return

    def _sync(self, deadline: float, timeout: float) -> None:
        """Run the engine's marker program and skip everything before its output
        (:class:`_Rebooted` when the board reboots instead)."""
        self._write(self._engine.sync())
        self._watch = True
        try:
            synced = self._wait_for(Synced, deadline)
        finally:
            self._watch = False
        if not synced:
            raise _NoAnswer(
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
                if _looks_rebooted(bytes(self._tail)) or b"soft reboot" in data:
                    self._come_back_before_call("reset", f"it printed {data[-60:]!r}", timeout)
            return
        if eng.state in _RUNNING:
            # Code left running (exec_no_follow): stop it, keeping time for a full enter.
            if self._stop_running(time.monotonic() + (deadline - time.monotonic()) / 2):
                return
        try:
            self._enter(deadline, timeout)
        except _NoAnswer:
            raise
        except DeviceConnectionError as exc:
            self._come_back_before_call("disconnect", str(exc), timeout)

    def _come_back_before_call(self, kind: str, detail: str, timeout: float) -> None:
        """Recover between calls; raise (typed) only when the board does not come back."""
        report = self._recover_now(kind)
        if not report.recovered:
            raise self._fault_error(_Fault(kind, detail), report, timeout)

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
        """Set the RAM marker in the board's current RAM (once per board life)."""
        if self._armed:
            return
        self._run(_RAM_ARM.encode(), deadline)
        self._armed = True

    def _arm_quietly(self, deadline: float) -> None:
        """Arm the RAM marker right away (so the first call is one round trip); a failure
        is left for the next call to meet."""
        try:
            self._arm(deadline)
        except _Fault:
            self._engine.enter_raw_repl()  # out of step: the next call resyncs

    def _run(
        self,
        data: bytes,
        deadline: float,
        on_stdout: Callable[[bytes], None] | None = None,
        *,
        follow: bool = True,
    ) -> tuple[bytes, bytes]:
        """One exchange from an idle prompt, no recovery: ``(stdout, stderr)``, or
        :class:`_Fault` saying what went wrong (the board is then in an unknown state)."""
        eng = self._engine
        out: list[bytes] = []
        err: list[bytes] = []
        tail = b""  # the latest stdout/stderr, to tell boot text from output
        quiet_until = 0.0  # boot text seen: when the silence after it proves a reboot
        self._tail.clear()
        try:
            self._write(eng.exec(data, raw_paste=self._use_paste(data)))
            while True:
                ev = self._next_event(min(deadline, quiet_until) if quiet_until else deadline)
                if ev is None:
                    if quiet_until and time.monotonic() < deadline:
                        raise _Fault("reset", f"it printed {tail[-80:]!r} instead of the reply")
                    raise _Fault("timeout", "no answer")
                if isinstance(ev, Stdout | Stderr):
                    if isinstance(ev, Stdout):
                        out.append(ev.data)
                        if on_stdout is not None:
                            on_stdout(ev.data)
                    else:
                        err.append(ev.data)
                    tail = (tail + ev.data)[-_TAIL:]
                    quiet_until = time.monotonic() + REBOOT_QUIET if _looks_rebooted(tail) else 0.0
                elif isinstance(ev, ExecFinished):
                    return b"".join(out), b"".join(err)
                elif isinstance(ev, ExecStarted):
                    if not follow:
                        return b"", b""
                elif isinstance(ev, RawPasteAccepted):
                    self.raw_paste = True
                elif isinstance(ev, RawPasteRefused):
                    self.raw_paste = False
        except ProtocolError as exc:
            raise _Fault("noise", str(exc), exc) from None
        except DeviceConnectionError as exc:
            raise _Fault("disconnect", str(exc), exc) from None

    def _call(
        self,
        data: bytes,
        limit: float,
        on_stdout: Callable[[bytes], None] | None = None,
        *,
        follow: bool = True,
    ) -> tuple[bytes, bytes]:
        """An exchange with everything around it: ready the board, arm the RAM marker, run,
        and after a fault recover the board and raise the error that says what happened."""
        with self.lock:
            self._check_usable()
            deadline = time.monotonic() + limit
            try:
                self._ensure_ready(deadline, limit)
            except _NoAnswer as exc:
                fault = _Fault("timeout", str(exc))
                report = self._recover_now(fault.kind)
                raise self._fault_error(fault, report, limit) from None
            try:
                self._arm(deadline)
                return self._run(data, deadline, on_stdout, follow=follow)
            except _Fault as fault:
                report = self._recover_now(fault.kind)
                raise self._fault_error(fault, report, limit) from None

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
        once while the board is broken.
        """
        data = code.encode() if isinstance(code, str) else bytes(code)
        limit = self.timeout if timeout is None else timeout
        return self._call(data, limit, on_stdout)

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run ``code`` and return its stdout (UTF-8, ``\\r\\n`` read as ``\\n``).

        DeviceError (with ``exc_type``, message and the board's traceback) when the code
        raised; DeviceTimeout after ``timeout`` seconds, the board interrupted and usable;
        the errors of :meth:`exec_raw` when something happened to the board.
        """
        out, err = self.exec_raw(code, timeout, on_stdout)
        if err:
            raise self._device_error(err)
        return out.decode("utf-8", "replace").replace("\r\n", "\n")

    def eval(self, expr: str, timeout: float | None = None) -> object:
        """The value of ``expr`` on the board, as a Python literal (see :func:`parse_literal`:
        what the board prints is parsed, never evaluated on the host)."""
        text = self.exec(f"print('{_VALUE_MARK}'+repr({expr}))", timeout)
        mark = text.rfind("\x1e")
        value = text[mark + 1 :].strip()
        try:
            if mark < 0:
                raise ValueError("no value marker")
            return parse_literal(value)
        except ValueError:
            raise ProtocolError(
                f"eval({expr!r}) on {self.port}: the board's value {_short(value)} is not a "
                "literal (numbers, str, bytes, bytearray, lists, tuples, dicts, sets, None, "
                "bools); return one of those, or use exec() and print what you need"
            ) from None

    def exec_no_follow(self, code: str | bytes, timeout: float | None = None) -> None:
        """Start ``code`` and return as soon as the board runs it, without waiting for it to
        end; the next call (or :meth:`interrupt`) stops it."""
        data = code.encode() if isinstance(code, str) else bytes(code)
        limit = self.timeout if timeout is None else timeout
        self._call(data, limit, follow=False)

    def _device_error(self, err: bytes) -> DeviceError:
        text = err.decode("utf-8", "replace").replace("\r\n", "\n")
        exc_type, message = parse_traceback(text)
        return DeviceError(message, exc_type=exc_type, traceback=text, port=self.port)

    # -- recovery -------------------------------------------------------------------------

    def recover(self, timeout: float | None = None) -> RecoveryReport:
        """Bring the board back to an idle raw-REPL prompt, whatever happened to it.

        Escalates, each step given a share of ``timeout`` (default ``recovery_timeout``):
        interrupt (Ctrl-C, Ctrl-A, resync), soft reset (Ctrl-D), the reset line (where the
        port has one), reopening the port (retried with a bounded backoff: a USB board
        re-enumerating). A lost RAM is counted as a reset (``reset_count``, the reset
        listeners). Clears :attr:`broken` on success; :class:`BoardBrokenError` (with the
        report) when nothing worked.
        """
        limit = self.recovery_timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            report = self._recover_now("manual", limit)
            if not report.recovered:
                err = BoardBrokenError(
                    f"{self.port}: the board did not come back within {limit:g} s (tried "
                    f"{', '.join(dict.fromkeys(report.steps))}; last: {report.detail}); "
                    "power-cycle or replug it",
                    port=self.port,
                )
                err.fault = "broken"
                err.recovery = report
                raise err
            return report

    def _recover_now(self, kind: str, budget: float | None = None) -> RecoveryReport:
        """Recover after a fault of ``kind``; never raises for the board's sake. Updates
        :attr:`broken`, :attr:`last_recovery`, ``reset_count`` and the listeners."""
        limit = self.recovery_timeout if budget is None else budget
        report = self._bring_back(
            limit, _STEP_SHARE, verify=True, link_lost=kind == "disconnect", hint=kind
        )
        self.last_recovery = report
        if report.recovered:
            self.broken = None
            if report.ram_lost:
                self.reset_count += 1
                self._notify_reset()
        else:
            self.broken = report.detail or "it does not answer"
        return report

    def _bring_back(
        self,
        budget: float,
        shares: dict[str, float],
        *,
        verify: bool,
        link_lost: bool = False,
        hint: str = "",
    ) -> RecoveryReport:
        """The escalation: each step in ``shares`` gets its share of ``budget``, reopening
        the port the rest. A broken link skips to reopening, and so does a board that hangs
        right after it answered (a fault that struck the recovery itself); when every step
        failed, one more round in what time is left. ``verify``: once at a prompt, resync
        and check the RAM marker."""
        start = time.monotonic()
        deadline = start + budget
        steps: list[str] = []
        detail = ""
        full = [name for name in shares if name != "reset line" or self._has_reset_line()]
        full.append("reopen")
        cures_hang = [name for name in full if name in ("reset line", "reopen")]
        queue = ["reopen", *full] if link_lost else list(full)
        rounds_left = _RECOVERY_ROUNDS - 1
        was_armed = self._armed
        lost_seen = False
        while time.monotonic() < deadline and len(steps) < _MAX_STEPS:
            if not queue:
                if not rounds_left:
                    break
                rounds_left -= 1
                queue = list(full)
            step = queue.pop(0)
            now = time.monotonic()
            share = budget * shares.get(step, _REOPEN_SHARE)
            step_end = deadline if not queue else min(deadline, now + share)
            steps.append(step)
            verifying = False
            try:
                self._step(step, step_end, budget, hint)
                lost = False
                if verify:
                    verifying = True
                    # the board just answered: a tiny exchange needs little time
                    end = min(deadline, time.monotonic() + max(0.2, budget * 0.15))
                    missing = self._verify(end)
                    # once seen missing, the RAM stays lost for this recovery, whatever a
                    # later check (after the marker was set again) says
                    lost_seen = lost_seen or (missing and was_armed)
                    lost = lost_seen
            except _NoAnswer:
                detail = f"{step}: no raw REPL answer"
                if verifying:
                    queue = [name for name in cures_hang if name != step] or list(cures_hang)
                continue
            except _Rebooted:
                detail = f"{step}: the board rebooted again"
                lost_seen = True  # whatever a marker check says later, this RAM is new
                continue
            except (_Fault, ProtocolError) as exc:
                detail = f"{step}: {self._short_reason(exc)}"
                if isinstance(exc, _Fault) and exc.kind == "disconnect":
                    queue = ["reopen"] if step != "reopen" else []
                elif verifying and isinstance(exc, _Fault) and exc.kind == "timeout":
                    # it answered, then hung: only a reset or a reopened port cures that
                    queue = [name for name in cures_hang if name != step] or list(cures_hang)
                continue
            except DeviceConnectionError as exc:
                detail = f"{step}: {self._short_reason(exc)}"
                if step != "reopen":
                    queue = ["reopen"]  # the link itself is gone: only reopening can help
                continue
            if not was_armed and (step != "interrupt" or hint == "reset"):
                lost = True  # no marker to tell: say lost, the safe side
            if "soft reset" in steps or "reset line" in steps:
                # A reset was sent: it acted, or the board (busy, or slow to read its
                # input) will act on it later. Its RAM counts as lost either way: sessions
                # then set up their board state again rather than trusting it.
                lost = True
            if not verify:
                lost = lost_seen
            return RecoveryReport(tuple(steps), True, lost, time.monotonic() - start)
        return RecoveryReport(tuple(steps), False, False, time.monotonic() - start, detail)

    def _has_reset_line(self) -> bool:
        # A pseudo-terminal or a socket has no modem lines; asking costs nothing.
        return self._transport.has_reset_line

    def _short_reason(self, exc: BaseException) -> str:
        """An error's text for a recovery report: one line, without the port's name."""
        text = " ".join(str(exc).split())
        for prefix in (f"cannot open {self.port}: ", f"{self.port}: "):
            text = text.replace(prefix, "")
        if len(text) > 120:
            text = text[:117].rsplit(" ", 1)[0] + "..."
        return text

    def _step(self, step: str, step_end: float, budget: float, hint: str = "") -> bool:
        """One escalation step; True when the board is at a raw-REPL prompt afterwards."""
        eng = self._engine
        transport = self._transport
        if step == "interrupt":
            # After boot text the board sits at a prompt: nothing runs to stop. Otherwise
            # Ctrl-C gets half the step, entering the raw REPL the rest.
            if eng.state in _RUNNING and hint != "reset":
                half = time.monotonic() + (step_end - time.monotonic()) / 2
                if self._stop_running(half):
                    return True
            if eng.state is State.ERROR:
                self._let_reply_end(min(step_end, time.monotonic() + REPLY_END_WAIT))
            self._enter(step_end, budget)
            return True
        if step == "soft reset":
            # Ctrl-D on an empty line (friendly or raw REPL) reboots the board: Ctrl-C first
            # empties the line (a CR would be code in the raw REPL, and Ctrl-D would run it).
            transport.write(CTRL_C + CTRL_C + CTRL_D)
            self._enter(step_end, budget)
            return True
        if step == "reset line":
            if not transport.pulse_reset():
                raise _NoAnswer(f"{self.port}: the reset line cannot be pulsed", port=self.port)
            self._enter(step_end, budget)
            return True
        # reopen: the port may be gone for a while (re-enumeration)
        transport.reopen(max(0.0, step_end - time.monotonic()))
        transport.discard_input()
        self._enter(step_end, budget)
        return True

    def _let_reply_end(self, deadline: float) -> None:
        """After noise where a reply should start, the board is most likely running the
        code all the same: let its reply end (``EOT EOT >``) before interrupting, so a
        Ctrl-C never lands in code that runs fine (or in the next code, late)."""
        end = CTRL_D + CTRL_D + RAW_REPL_PROMPT
        while not self._tail.endswith(end) and not _looks_rebooted(bytes(self._tail)):
            data = self._transport.read_some(deadline)
            if not data:
                return
            self._tail += data
            del self._tail[:-_TAIL]

    def _verify(self, deadline: float) -> bool:
        """Resync and check the RAM marker: True when it is missing (the board's RAM is not
        the one it was set in, or it was never set). The check changes nothing on the board;
        the marker is set again only after a check said it is missing, so a check whose
        answer was lost never hides a lost RAM from the next one."""
        self._sync(deadline, max(0.0, deadline - time.monotonic()))
        out, err = self._run(_RAM_CHECK.encode(), deadline)
        if err or out.strip() not in (b"True", b"False"):
            raise _Fault("noise", f"the RAM check answered {out[-40:] + err[-40:]!r}")
        missing = out.strip() == b"False"
        if missing or not self._armed:
            self._armed = False
            self._run(_RAM_ARM.encode(), deadline)
            self._armed = True
        return missing

    def _fault_error(self, fault: _Fault, report: RecoveryReport, limit: float) -> Exception:
        """The error a faulted call raises, saying what happened and what was done."""
        port = self.port
        kind = fault.kind
        escalated = any(step != "interrupt" for step in report.steps)
        if kind == "timeout" and report.recovered and not escalated:
            if not report.ram_lost:
                return DeviceTimeout(
                    f"{port}: no answer within {limit:g} s; the board was interrupted "
                    "and is usable again",
                    timeout=limit,
                    port=port,
                    exc_type="KeyboardInterrupt",
                )
        if report.ram_lost and (kind == "noise" or (kind == "timeout" and not escalated)):
            # Its RAM is gone though nothing but an interrupt was needed: what looked like
            # noise (or silence) was the board rebooting by itself.
            kind = "reset"
        if report.recovered:
            after = f"the board was {report.how} and is usable again" + (
                " (its RAM is gone)" if report.ram_lost else " (its RAM is intact)"
            )
        else:
            after = (
                f"the board did not come back: recovery failed (tried "
                f"{', '.join(dict.fromkeys(report.steps))} for {report.elapsed:.1f} s; last: "
                f"{report.detail}); it is broken until recover() succeeds (power-cycle or "
                "replug it)"
            )
        detail = self._short_reason(Exception(fault.detail))
        err: Exception
        if kind == "timeout":
            err = BoardHungError(
                f"{port}: no answer within {limit:g} s, not even to Ctrl-C; {after}",
                timeout=limit,
                port=port,
            )
        elif kind == "reset":
            err = BoardResetError(
                f"{port}: the board reset during the call (brown-out, watchdog, crash or "
                f"reset); {after}",
                port=port,
            )
        elif kind == "disconnect":
            err = BoardDisconnectedError(
                f"{port}: the link to the board dropped during the call ({detail}); {after}",
                port=port,
            )
        else:
            err = BoardNoiseError(
                f"{port}: the board sent noise instead of its reply ({detail}); the code may "
                f"or may not have run; {after}"
            )
        assert isinstance(err, BoardFault)
        err.fault = kind
        err.recovery = report
        return err

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
        while True:
            try:
                self._enter(deadline, limit)
                return self.eval(f"'{_HARD_RESET_MARK}' in globals()", timeout=limit) is False
            except DeviceConnectionError:
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
                except _Fault as fault:
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
        interrupted, no reset)."""
        with self.lock:
            if not self._closed:
                self._closed = True
                self._transport.close()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "broken" if self.broken is not None else self._engine.state.value
        return f"<Communicator {self.port} {state}>"
