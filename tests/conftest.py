"""Shared fixtures of the project's own suite: emulated boards on pseudo-terminals.

``unix_port`` is the bare MicroPython unix port (the ``unix`` profile) on a PTY: the
reference every protocol test can run against.  ``board_port`` runs a test once on the bare
unix port and once per emulator profile.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pytest_mpsession.emulator import PtyBoard

#: the profiles ``board_port`` runs over ("unix" is the bare interpreter)
BOARD_PROFILES = ["unix", "generic", "esp32", "rp2", "stm32", "legacy"]


@pytest.fixture
def unix_port() -> Iterator[str]:
    """Path of a pseudo-terminal serving the bare MicroPython unix port (profile ``unix``).

    It behaves like a board's serial device: soft resets reboot, Ctrl-C interrupts running
    code.  The board is closed (its process ended) after the test.
    """
    with PtyBoard("unix") as board:
        yield board.path


@pytest.fixture(params=BOARD_PROFILES)
def board_port(request: pytest.FixtureRequest) -> Iterator[str]:
    """Path of a pseudo-terminal serving an emulated board, once per profile
    (``unix``, ``generic``, ``esp32``, ``rp2``, ``stm32``, ``legacy``)."""
    with PtyBoard(request.param) as board:
        yield board.path


@pytest.fixture
def pty_board_factory() -> Iterator[type[PtyBoard]]:
    """Start boards with ``pty_board_factory(profile, **options)``; all closed after the test."""
    boards: list[PtyBoard] = []

    class _Factory(PtyBoard):
        def __init__(self, profile: str = "generic", **options: object) -> None:
            super().__init__(profile, **options)
            boards.append(self)

    yield _Factory
    for b in boards:
        b.close()


class RawRepl:
    """A minimal raw-REPL client over pyserial, for the emulator's own tests.

    Written here (not the package's Communicator) so the emulator is proven by a client that
    shares no code with it beyond pyserial.
    """

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 10.0) -> None:
        import serial

        self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)
        self.timeout = timeout

    def read_until(self, ending: bytes, timeout: float | None = None) -> bytes:
        """Read until the data ends with ``ending``; AssertionError with what came on timeout."""
        import time

        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        buf = bytearray()
        while not buf.endswith(ending):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {ending!r}; got {bytes(buf)!r}")
            self.serial.timeout = left
            chunk = self.serial.read(max(1, self.serial.in_waiting))
            buf += chunk
        return bytes(buf)

    def enter_raw(self) -> bytes:
        """Interrupt whatever runs and enter the raw REPL; returns the banner bytes."""
        self.serial.write(b"\r\x03\x03")
        # the board may be at the friendly prompt (answers ">>> ") or already in the raw
        # REPL (answers nothing): take what comes within a short deadline either way
        import time

        deadline = time.monotonic() + 0.2
        buf = b""
        while buf.count(b">>> ") < 2 and time.monotonic() < deadline:
            self.serial.timeout = max(0.0, deadline - time.monotonic())
            buf += self.serial.read(max(1, self.serial.in_waiting))
        self.serial.reset_input_buffer()
        self.serial.write(b"\x01")
        return self.read_until(b"raw REPL; CTRL-B to exit\r\n>")

    def exec_raw(self, code: str | bytes, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Plain raw mode: send code + Ctrl-D; return (stdout, stderr)."""
        if isinstance(code, str):
            code = code.encode()
        self.serial.write(code + b"\x04")
        reply = self.read_until(b"\x04>", timeout)
        assert reply.startswith(b"OK"), reply
        out, err, _ = reply[2:].split(b"\x04")
        return out, err

    def exec_paste(self, code: str | bytes, timeout: float | None = None) -> tuple[bytes, bytes]:
        """Raw-paste mode with its flow control; return (stdout, stderr)."""
        if isinstance(code, str):
            code = code.encode()
        self.serial.write(b"\x05A\x01")
        self.serial.timeout = self.timeout
        head = self.serial.read(2)
        assert head == b"R\x01", head
        window = int.from_bytes(self.serial.read(2), "little")
        assert window > 0
        remaining = window
        i = 0
        while i < len(code):
            while remaining == 0 or self.serial.in_waiting:
                b = self.serial.read(1)
                if b == b"\x01":
                    remaining += window
                elif b == b"\x04":
                    raise AssertionError("board aborted raw-paste")
            n = min(remaining, len(code) - i)
            self.serial.write(code[i : i + n])
            i += n
            remaining -= n
        self.serial.write(b"\x04")
        reply = self.read_until(b"\x04>", timeout)
        reply = reply[reply.index(b"\x04") + 1 :]
        out, err, _ = reply.split(b"\x04")
        return out, err

    def exec(self, code: str | bytes, timeout: float | None = None) -> str:
        """Run code in plain raw mode; AssertionError with the traceback if it raised."""
        out, err = self.exec_raw(code, timeout)
        assert not err, err.decode()
        return out.decode()

    def eval(self, expr: str) -> str:
        """``repr`` of an expression on the board, as text."""
        return self.exec(f"print(repr({expr}))").strip()

    def close(self) -> None:
        """Close the serial port."""
        self.serial.close()


@pytest.fixture
def raw_repl() -> Iterator[type[RawRepl]]:
    """The class of a minimal raw-REPL client; every client made is closed after the test."""
    clients: list[RawRepl] = []

    class _Client(RawRepl):
        def __init__(self, port: str, **kw: object) -> None:
            super().__init__(port, **kw)  # type: ignore[arg-type]
            clients.append(self)

    yield _Client
    for c in clients:
        c.close()


def _labgrid_step_logger_nests() -> None:
    """labgrid (the ``labgrid`` extra) brings a pytest plugin that starts a process-wide step
    logger in every pytest config and stops it at the config's end; a second config alive
    in the same process (a pytester run inside this run, ``parseconfigure`` twice) fails to
    start it. Counted here, it starts with the first config and stops with the last."""
    try:
        from labgrid.logging import StepLogger
    except ImportError:
        return
    start, stop = StepLogger.start.__func__, StepLogger.stop.__func__
    depth = [0]

    def start_nested(cls: type, length_limit: int | None = None) -> None:
        depth[0] += 1
        if depth[0] == 1:
            start(cls, length_limit)

    def stop_nested(cls: type) -> None:
        depth[0] -= 1
        if depth[0] == 0:
            stop(cls)

    StepLogger.start = classmethod(start_nested)
    StepLogger.stop = classmethod(stop_nested)


_labgrid_step_logger_nests()
