"""One board, spoken to through its raw REPL: ``exec``, ``eval``, interrupts and resets.

The thin I/O loop around :class:`~pytest_mpsession.protocol.engine.RawReplClient`: it writes
what the engine says, reads with deadlines (no polling: every wait is a blocking read that
ends when bytes arrive or the deadline passes) and turns the engine's events into return
values and errors. One :class:`threading.RLock` serializes whole exchanges, so callers on
several threads never interleave their bytes.
"""

from __future__ import annotations

import ast
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Final

from pytest_mpsession.errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
)
from pytest_mpsession.protocol.constants import FRIENDLY_PROMPT, RAW_REPL_BANNER
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

__all__ = ["Communicator", "parse_literal", "parse_traceback"]

# Code up to this size goes out in plain raw mode even when the board has raw-paste: it fits
# any board's UART buffer, and plain raw needs one round trip where raw-paste needs two.
SMALL_CODE: Final = 256
# How long an interrupted board gets to print its KeyboardInterrupt and come back.
RECOVERY_TIMEOUT: Final = 3.0
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
        #: how long an interrupted board gets to come back before DeviceTimeout says so
        self.recovery_timeout = RECOVERY_TIMEOUT
        self.lock = threading.RLock()
        self.reset_count = 0
        self._transport = transport
        self._engine = RawReplClient()
        self._listeners: list[Callable[[], None]] = []
        self._closed = False

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

        DeviceConnectionError naming the port when it cannot be opened or the board does not
        answer the raw REPL.
        """
        transport = Transport.open(port, baudrate=baudrate, timeout=timeout, exclusive=exclusive)
        comm = cls(transport, timeout=timeout, raw_paste=raw_paste)
        try:
            with comm.lock:
                transport.discard_input()
                comm._enter(time.monotonic() + timeout, timeout)
        except BaseException:
            transport.close()
            raise
        return comm

    # -- the I/O loop ---------------------------------------------------------------------

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
                    eng.receive_data(received)

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
            eng.receive_data(data)

    def _wait_for(self, kind: type[Event], deadline: float) -> bool:
        """Read until an event of ``kind``; False at the deadline."""
        while True:
            ev = self._next_event(deadline)
            if ev is None:
                return False
            if isinstance(ev, kind):
                return True

    def _enter(self, deadline: float, timeout: float) -> None:
        """Interrupt and enter the raw REPL (retrying), resynchronising if retried."""
        eng = self._engine
        tries = 0
        while True:
            tries += 1
            self._write(eng.enter_raw_repl())
            retry_at = min(deadline, time.monotonic() + ENTER_RETRY)
            try:
                if self._wait_for(RawReplEntered, retry_at):
                    break
            except ProtocolError:  # pragma: no cover - entering accepts any chatter
                pass
            if time.monotonic() >= deadline:
                raise DeviceConnectionError(
                    f"no raw REPL answer from {self.port} within {timeout:g} s: "
                    + self._chatter_hint(),
                    port=self.port,
                )
        if tries > 1:
            # An earlier enter may still be answered: skip everything up to a marker.
            self._write(eng.sync())
            if not self._wait_for(Synced, deadline):
                raise DeviceConnectionError(
                    f"no raw REPL answer from {self.port} within {timeout:g} s: "
                    "the board entered the raw REPL but then stopped answering",
                    port=self.port,
                )

    def _chatter_hint(self) -> str:
        chatter = self._engine.recent_input
        if not chatter:
            return (
                "it sent nothing (is it powered and running MicroPython, and is the baudrate "
                "right?)"
            )
        return (
            f"it sent {chatter[-60:]!r} but never the raw-REPL banner (a device that is not "
            "MicroPython, a wrong baudrate, or a program that catches KeyboardInterrupt)"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise DeviceConnectionError(f"{self.port}: the communicator is closed", port=self.port)

    def _ensure_ready(self, deadline: float, timeout: float) -> None:
        """Back at an idle raw-REPL prompt, taking in whatever arrived while idle."""
        eng = self._engine
        if eng.state is State.READY:
            data = self._transport.read_available()
            if data:
                eng.receive_data(data)  # a stray print while idle: Stray events, dropped
                while not isinstance(eng.next_event(), NeedData):
                    pass
            return
        if eng.state in _RUNNING:
            # Code left running (exec_no_follow): stop it, keeping time for a full enter.
            if self._stop_running(time.monotonic() + (deadline - time.monotonic()) / 2):
                return
        self._enter(deadline, timeout)

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

    def exec_raw(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> tuple[bytes, bytes]:
        """Run ``code``; ``(stdout, stderr)`` as bytes, without raising for the board's
        exception (stderr holds its traceback). DeviceTimeout after ``timeout`` seconds
        (the board is interrupted and usable again)."""
        data = code.encode() if isinstance(code, str) else bytes(code)
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            deadline = time.monotonic() + limit
            eng = self._engine
            self._ensure_ready(deadline, limit)
            out: list[bytes] = []
            err: list[bytes] = []
            try:
                self._write(eng.exec(data, raw_paste=self._use_paste(data)))
                while True:
                    ev = self._next_event(deadline)
                    if ev is None:
                        self._recover(limit)
                    elif isinstance(ev, Stdout):
                        out.append(ev.data)
                        if on_stdout is not None:
                            on_stdout(ev.data)
                    elif isinstance(ev, Stderr):
                        err.append(ev.data)
                    elif isinstance(ev, ExecFinished):
                        return b"".join(out), b"".join(err)
                    elif isinstance(ev, RawPasteAccepted):
                        self.raw_paste = True
                    elif isinstance(ev, RawPasteRefused):
                        self.raw_paste = False
            except ProtocolError:
                self._resync_after_error()
                raise

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run ``code`` and return its stdout (UTF-8, ``\\r\\n`` read as ``\\n``).

        DeviceError (with ``exc_type``, message and the board's traceback) when the code
        raised; DeviceTimeout after ``timeout`` seconds, the board interrupted and usable.
        """
        out, err = self.exec_raw(code, timeout, on_stdout)
        if err:
            raise self._device_error(err)
        return out.decode("utf-8", "replace").replace("\r\n", "\n")

    def eval(self, expr: str, timeout: float | None = None) -> object:
        """The value of ``expr`` on the board, as a Python literal (see :func:`parse_literal`)."""
        text = self.exec(f"print(repr({expr}))", timeout).strip()
        try:
            return parse_literal(text)
        except ValueError:
            raise ProtocolError(
                f"eval({expr!r}) on {self.port}: the board's value {_short(text)} is not a "
                "literal (numbers, str, bytes, bytearray, lists, tuples, dicts, sets, None, "
                "bools); return one of those, or use exec() and print what you need"
            ) from None

    def exec_no_follow(self, code: str | bytes, timeout: float | None = None) -> None:
        """Start ``code`` and return as soon as the board runs it, without waiting for it to
        end; the next call (or :meth:`interrupt`) stops it."""
        data = code.encode() if isinstance(code, str) else bytes(code)
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            deadline = time.monotonic() + limit
            self._ensure_ready(deadline, limit)
            try:
                self._write(self._engine.exec(data, raw_paste=self._use_paste(data)))
                while True:
                    ev = self._next_event(deadline)
                    if ev is None:
                        self._recover(limit)
                    if isinstance(ev, ExecStarted | ExecFinished):
                        return
            except ProtocolError:
                self._resync_after_error()
                raise

    def _device_error(self, err: bytes) -> DeviceError:
        text = err.decode("utf-8", "replace").replace("\r\n", "\n")
        exc_type, message = parse_traceback(text)
        return DeviceError(message, exc_type=exc_type, traceback=text, port=self.port)

    def _recover(self, timeout: float) -> None:
        """After a timeout: interrupt, read the KeyboardInterrupt, resync; then raise."""
        eng = self._engine
        deadline = time.monotonic() + self.recovery_timeout
        back = False
        if eng.state in _RUNNING:
            back = self._stop_running(deadline)
        if not back:
            try:
                self._enter(time.monotonic() + self.recovery_timeout, self.recovery_timeout)
                back = True
            except (DeviceConnectionError, ProtocolError):
                back = False
        if back:
            raise DeviceTimeout(
                f"{self.port}: no answer within {timeout:g} s; the board was interrupted "
                "and is usable again",
                timeout=timeout,
                port=self.port,
                exc_type="KeyboardInterrupt",
            )
        raise DeviceTimeout(
            f"{self.port}: no answer within {timeout:g} s, and the board did not come back "
            f"after an interrupt either: recovery failed (hard-reset it)",
            timeout=timeout,
            port=self.port,
        )

    def _resync_after_error(self) -> None:
        """After a ProtocolError: get back to the prompt if possible, quietly."""
        try:
            self._enter(time.monotonic() + self.recovery_timeout, self.recovery_timeout)
        except (DeviceConnectionError, ProtocolError):
            pass

    # -- control --------------------------------------------------------------------------

    def interrupt(self, timeout: float | None = None) -> None:
        """Stop whatever runs and be back at the raw-REPL prompt."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            deadline = time.monotonic() + limit
            eng = self._engine
            if eng.state is State.READY:
                return
            self._ensure_ready(deadline, limit)

    def soft_reset(self, timeout: float | None = None) -> None:
        """Ctrl-D: the board's RAM is gone (every variable); back in the raw REPL."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
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
                if not self._wait_for(RawReplEntered, deadline):
                    # A board that came back quiet, or a boot.py that printed over the
                    # banner: ask again.
                    self._enter(time.monotonic() + self.recovery_timeout, self.recovery_timeout)
            except ProtocolError:
                self._resync_after_error()
                raise
        self._notify_reset()

    def hard_reset(self, timeout: float | None = None) -> None:
        """Reset the board's hardware: an RTS pulse where it is wired to the reset line,
        otherwise ``machine.reset()``; then reopen the port until the board answers."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
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
        bus) and enter the raw REPL again. The board's RAM may or may not have survived."""
        limit = self.timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            deadline = time.monotonic() + limit
            self._transport.reopen(limit)
            self._enter(deadline, limit)

    def add_reset_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every reset this communicator makes (RAM lost)."""
        self._listeners.append(callback)

    def _notify_reset(self) -> None:
        for callback in list(self._listeners):
            callback()

    def close(self) -> None:
        """Close the port, leaving the board as it is (nothing interrupted, no reset)."""
        with self.lock:
            if not self._closed:
                self._closed = True
                self._transport.close()

    def __enter__(self) -> Communicator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Communicator {self.port} {self._engine.state.value}>"
