"""The Communicator against the real MicroPython unix port, served as a board on a PTY
(the ``unix_port`` fixture of tests/conftest.py), and against devices that are not boards."""

from __future__ import annotations

import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mpsession.boardlock import BoardBusyError
from pytest_mpsession.communicator import Communicator, parse_literal, parse_traceback
from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    ProtocolError,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def comm(unix_port: str) -> Iterator[Communicator]:
    """A communicator on the unix port, default settings."""
    with Communicator.open(unix_port, timeout=10) as c:
        yield c


def record_writes(c: Communicator) -> list[bytes]:
    """Every write the communicator makes from now on."""
    writes: list[bytes] = []
    transport = c._transport
    original = transport.write

    def write(data: bytes) -> None:
        writes.append(data)
        original(data)

    transport.write = write  # type: ignore[method-assign]
    return writes


def big_program(size: int) -> str:
    """A program of about ``size`` bytes whose stdout proves it all arrived and ran."""
    lines = []
    i = 0
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(f"def f{i}(x):\n    return x + {i}  # {'-' * 40}")
        i += 1
    lines.append(f"print(sum(globals()['f%d' % j](1) for j in range({i})))")
    return "\n".join(lines) + "\n"


def expected_big(size: int) -> int:
    n = big_program(size).count("def f")
    return sum(1 + j for j in range(n))


# -- exec and eval ----------------------------------------------------------------------


def test_exec_returns_stdout(comm: Communicator) -> None:
    assert comm.exec("print('hello', 6*7)") == "hello 42\n"
    assert comm.exec("x = 5") == ""
    assert comm.exec(b"print(x)") == "5\n"  # same RAM between calls


def test_eval_literals(comm: Communicator) -> None:
    cases: list[tuple[str, object]] = [
        ("1 + 1", 2),
        ("-7", -7),
        ("2**100", 2**100),
        ("1.5", 1.5),
        ("-1e100", -1e100),
        ("'a\\'b\\n\\u00e9'", "a'b\né"),
        ("b'\\x00\\xff'", b"\x00\xff"),
        ("bytearray(b'ab')", bytearray(b"ab")),
        ("bytearray()", bytearray()),
        ("[1, [2, (3,)], {'k': None}]", [1, [2, (3,)], {"k": None}]),
        ("()", ()),
        ("{1, 2}", {1, 2}),
        ("set()", set()),
        ("{}", {}),
        ("None", None),
        ("True", True),
        ("False", False),
        ("float('inf')", math.inf),
        ("-float('inf')", -math.inf),
        ("[float('inf'), -float('inf')]", [math.inf, -math.inf]),
        ("1j", 1j),
        ("frozenset({1})", frozenset({1})),
        ("frozenset()", frozenset()),
    ]
    for expr, value in cases:
        got = comm.eval(expr)
        assert got == value and type(got) is type(value), (expr, got)
    nan = comm.eval("float('nan')")
    assert isinstance(nan, float) and math.isnan(nan)


def test_eval_of_something_that_is_no_literal(comm: Communicator) -> None:
    with pytest.raises(ProtocolError, match=r"not a literal.*use exec\(\)"):
        comm.eval("print")
    assert comm.eval("3") == 3  # and the board is fine


def test_raw_paste_forced(unix_port: str) -> None:
    with Communicator.open(unix_port, raw_paste=True) as c:
        writes = record_writes(c)
        assert c.exec("print(1)") == "1\n"
        assert b"\x05A\x01" in writes
        assert c.raw_paste is True


def test_plain_raw_forced(unix_port: str) -> None:
    with Communicator.open(unix_port, raw_paste=False) as c:
        writes = record_writes(c)
        assert c.exec("print(2)") == "2\n"
        assert c.exec(big_program(2000)) == f"{expected_big(2000)}\n"
        assert all(b"\x05A\x01" not in w for w in writes)
        assert max(len(w) for w in writes) <= 256  # paced chunks
        assert c.raw_paste is False


def test_default_uses_raw_paste_for_long_code_only(comm: Communicator) -> None:
    writes = record_writes(comm)
    comm.exec("x = 1")
    # one round trip: the code, checked (the wrapper call carries it as a literal)
    assert len(writes) == 1 and writes[0].startswith(b"_mpsx(")
    # namespace 0 and operation 0 are the wrapper's defaults: left out of the line
    assert writes[0].endswith(b",'x = 1')\x04")
    comm.exec(big_program(1000))
    assert comm.raw_paste is True


@pytest.mark.parametrize("raw_paste", [True, False])
def test_30k_program(unix_port: str, raw_paste: bool) -> None:
    with Communicator.open(unix_port, raw_paste=raw_paste) as c:
        c.plain_chunk_pause = 0.001  # a PTY has no UART buffer to overflow; keep it quick
        code = big_program(30_000)
        assert len(code) >= 30_000
        assert c.exec(code) == f"{expected_big(30_000)}\n"
        assert c.exec("print('next')") == "next\n"


def test_large_output(comm: Communicator) -> None:
    out = comm.exec("for i in range(5000):\n    print('%06d' % i, 'x' * 40)")
    lines = out.splitlines()
    assert len(lines) == 5000
    assert lines[1234] == "001234 " + "x" * 40


def test_binary_output_is_exact(comm: Communicator) -> None:
    payload = bytes(b for b in range(256) if b != 4) * 40
    out, err = comm.exec_raw(
        "import sys\nb = bytes(b for b in range(256) if b != 4) * 40\nsys.stdout.buffer.write(b)"
    )
    assert err == b""
    assert out == payload


def test_stdout_streams_while_the_code_runs(comm: Communicator) -> None:
    seen: list[tuple[float, bytes]] = []
    start = time.monotonic()
    out = comm.exec(
        "import time\nprint('first')\ntime.sleep(0.3)\nprint('second')",
        on_stdout=lambda data: seen.append((time.monotonic() - start, data)),
    )
    total = time.monotonic() - start
    assert out == "first\nsecond\n"
    assert seen[0][1].startswith(b"first")
    assert seen[0][0] < total - 0.2  # delivered before the code ended


# -- errors from the board --------------------------------------------------------------


def test_exception_with_traceback(comm: Communicator) -> None:
    with pytest.raises(DeviceError) as info:
        comm.exec("print('before')\ndef f():\n    return 1 // 0\nf()")
    err = info.value
    assert err.exc_type == "ZeroDivisionError"
    assert err.message == "divide by zero"
    assert str(err) == "ZeroDivisionError: divide by zero"
    assert err.traceback.startswith("Traceback (most recent call last):\n")
    assert "line 3, in f" in err.traceback
    assert err.port == comm.port
    assert not isinstance(err, DeviceTimeout)


def test_custom_exception_and_multiline_message(comm: Communicator) -> None:
    with pytest.raises(DeviceError) as info:
        comm.exec("class MyError(Exception):\n    pass\nraise MyError('line one\\nline two')")
    assert info.value.exc_type == "MyError"
    assert info.value.message == "line one\nline two"


def test_syntax_error_in_both_modes(unix_port: str) -> None:
    for raw_paste in (True, False):
        with Communicator.open(unix_port, raw_paste=raw_paste) as c:
            with pytest.raises(DeviceError) as info:
                c.exec("def (:\n" + "x = 1\n" * 200)
            assert info.value.exc_type == "SyntaxError"
            assert c.exec("print('ok')") == "ok\n"


def test_exec_raw_does_not_raise(comm: Communicator) -> None:
    out, err = comm.exec_raw("print('a')\nraise ValueError('v')")
    assert out == b"a\n"
    assert err.endswith(b"ValueError: v\n")


def test_parse_traceback_of_micropython_1_9() -> None:
    text = (
        "Traceback (most recent call last):\r\n"
        '  File "<stdin>", line 1, in <module>\r\n'
        "ZeroDivisionError: division by zero\r\n"
    )
    assert parse_traceback(text) == ("ZeroDivisionError", "division by zero")
    assert parse_traceback("KeyboardInterrupt: \n") == ("KeyboardInterrupt", "")
    assert parse_traceback("StopIteration\n") == ("StopIteration", "")


@pytest.mark.parametrize(
    "text", ["<function f at 0x1>", "foo()", "{**x}", "1 + 2", "[1,", "bytearray([1])", "x"]
)
def test_parse_literal_refuses_anything_but_literals(text: str) -> None:
    with pytest.raises(ValueError, match="not a literal"):
        parse_literal(text)


# -- timeouts and interrupts ------------------------------------------------------------


def test_infinite_loop_times_out_and_the_board_comes_back(comm: Communicator) -> None:
    comm.exec("x = 41")
    start = time.monotonic()
    with pytest.raises(DeviceTimeout) as info:
        comm.exec("while True:\n    pass", timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.5 <= elapsed < 3
    assert "usable again" in str(info.value)
    assert info.value.timeout == 0.5
    assert comm.exec("print(x + 1)") == "42\n"  # same RAM: interrupted, not reset


def test_printing_loop_times_out_too(comm: Communicator) -> None:
    with pytest.raises(DeviceTimeout):
        comm.exec("while True:\n    print('spam' * 20)", timeout=0.3)
    assert comm.exec("print('ok')") == "ok\n"


def test_interrupt_of_a_program_that_catches_keyboardinterrupt(comm: Communicator) -> None:
    # One Ctrl-C is caught; the repeated ones of the recovery get it out (or the timeout
    # says recovery failed): either way one clear DeviceTimeout, never a hang.
    comm.recovery_timeout = 0.5
    code = (
        "while True:\n"
        "    try:\n"
        "        while True:\n"
        "            pass\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
    )
    with pytest.raises(DeviceTimeout) as info:
        comm.exec(code, timeout=0.3)
    if "usable again" in str(info.value):
        assert comm.exec("print(1)") == "1\n"
    else:
        assert "recovery failed" in str(info.value)


def test_recovery_failure_is_reported() -> None:
    # A board that enters the raw REPL, says OK to code, then never answers again.
    device = FakeDevice("hang")
    try:
        comm = Communicator.open(device.path, timeout=2)
        comm.recovery_timeout = 0.3
        start = time.monotonic()
        with pytest.raises(DeviceTimeout, match="recovery failed") as info:
            comm.exec("x = 1", timeout=0.3)
        assert time.monotonic() - start < 2
        assert "\n" not in str(info.value)
        comm.close()
    finally:
        device.close()


def test_board_busy_when_the_session_starts(unix_port: str) -> None:
    first = Communicator.open(unix_port)
    first.exec_no_follow("import time\nwhile True:\n    time.sleep(0.01)")
    first.close()  # leaves it running
    start = time.monotonic()
    with Communicator.open(unix_port, timeout=5) as second:
        assert time.monotonic() - start < 3
        assert second.exec("print('free')") == "free\n"


def test_board_busy_printing_when_the_session_starts(unix_port: str) -> None:
    first = Communicator.open(unix_port)
    first.exec_no_follow("while True:\n    print('raw REPL; CTRL-B to exit', 'noise' * 10)")
    first.close()
    with Communicator.open(unix_port, timeout=5) as second:
        assert second.exec("print('free')") == "free\n"


def test_interrupt_stops_code_left_running(comm: Communicator) -> None:
    comm.exec_no_follow("while True:\n    pass")
    comm.interrupt(timeout=2)
    assert comm.exec("print(3)") == "3\n"
    comm.interrupt()  # idle: nothing to do
    assert comm.exec("print(4)") == "4\n"


# -- resets -----------------------------------------------------------------------------


def test_soft_reset_loses_ram_and_tells_listeners(comm: Communicator) -> None:
    calls: list[int] = []
    comm.add_reset_listener(lambda: calls.append(comm.reset_count))
    comm.exec("survivor = 1")
    comm.soft_reset()
    assert comm.reset_count == 1
    assert calls == [1]
    with pytest.raises(DeviceError) as info:
        comm.exec("survivor")
    assert info.value.exc_type == "NameError"
    assert comm.exec("print('alive')") == "alive\n"


def test_hard_reset_where_impossible_says_so(comm: Communicator) -> None:
    # The bare unix port has no reset line (a PTY) and no machine.reset().
    with pytest.raises(DeviceConnectionError, match=r"cannot hard-reset.*AttributeError"):
        comm.hard_reset(timeout=3)
    assert comm.exec("print('still here')") == "still here\n"


def test_hard_reset_by_machine_reset(pty_board_factory: Callable[..., PtyBoard]) -> None:
    board = pty_board_factory("generic")
    with Communicator.open(board.path) as c:
        calls: list[str] = []
        c.add_reset_listener(lambda: calls.append("reset"))
        c.exec("survivor = 1")
        c.hard_reset(timeout=10)
        assert calls == ["reset"] and c.reset_count == 1
        assert c.eval("'survivor' in globals()") is False


# -- threads ----------------------------------------------------------------------------


def test_concurrent_callers_are_serialized(comm: Communicator) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(30):
                assert comm.exec(f"v{n} = {i}\nprint('w{n}', v{n})") == f"w{n} {i}\n"
                assert comm.eval(f"v{n} * 2") == i * 2
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# -- devices that are not boards --------------------------------------------------------


def test_nonexistent_port() -> None:
    with pytest.raises(DeviceConnectionError) as info:
        Communicator.open("/dev/ttyNOSUCHBOARD7", timeout=1)
    assert str(info.value).startswith("cannot open /dev/ttyNOSUCHBOARD7: no such port")
    assert "\n" not in str(info.value)


def test_busy_port(comm: Communicator) -> None:
    with pytest.raises(BoardBusyError, match=r"^board busy: ") as info:
        Communicator.open(comm.port, timeout=1)
    assert f"{comm.port} is in use by pid {os.getpid()}" in str(info.value)
    assert isinstance(info.value, DeviceConnectionError)
    assert comm.exec("print(1)") == "1\n"  # the first user is unharmed


class FakeDevice:
    """The far end of a PTY pair, played by a thread: echoes, spews noise, stays silent, or
    (``hang``) enters the raw REPL, says OK to the first code and then never answers."""

    def __init__(self, mode: str) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)
        # Never block in a write: once the communicator has gone, nobody drains the slave
        # side, and a blocking write of noise into a full PTY buffer would hang close().
        os.set_blocking(self.master, False)
        self.mode = mode
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import select

        rng = random.Random(7)
        hung = False
        while not self._stop.is_set():
            ready = select.select([self.master], [], [], 0.005)[0]
            data = b""
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
            try:
                if self.mode == "echo" and data:
                    os.write(self.master, data)
                elif self.mode == "noise":
                    os.write(self.master, rng.randbytes(64))
                elif self.mode == "hang" and data and not hung:
                    if data.endswith(b"\x05A\x01"):
                        os.write(self.master, b"R\x00")  # no raw-paste
                    elif data.endswith(b"\x04"):
                        os.write(self.master, b"OK")
                        hung = True
                    elif data.endswith(b"\x01"):
                        os.write(self.master, b"\r\nraw REPL; CTRL-B to exit\r\n>")
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)


@pytest.mark.parametrize(
    ("mode", "hint"),
    [
        ("echo", "never the raw-REPL banner"),
        ("noise", "never the raw-REPL banner"),
        ("silent", "it sent nothing"),
    ],
)
def test_device_that_is_not_a_board(mode: str, hint: str) -> None:
    device = FakeDevice(mode)
    try:
        start = time.monotonic()
        with pytest.raises(DeviceConnectionError) as info:
            Communicator.open(device.path, timeout=1.0)
        elapsed = time.monotonic() - start
        msg = str(info.value)
        assert msg.startswith(f"no raw REPL answer from {device.path} within 1 s: ")
        assert hint in msg
        assert "\n" not in msg
        # The error comes at the timeout, not after some internal retry loop; the slack is
        # for a loaded CI machine, not for the communicator.
        assert elapsed < 1.0 + 2.0
    finally:
        device.close()


def test_closed_communicator(unix_port: str) -> None:
    c = Communicator.open(unix_port)
    c.close()
    c.close()
    with pytest.raises(DeviceConnectionError, match="closed"):
        c.exec("1")


# -- an old board (the emulator's MicroPython 1.9 "legacy" profile) ---------------------


def test_legacy_board_without_raw_paste(pty_board_factory: Callable[..., PtyBoard]) -> None:
    board = pty_board_factory("legacy")
    with Communicator.open(board.path) as c:
        assert c.exec("print(6*7)") == "42\r\n"  # the board's line ending, untouched
        out, _ = c.exec_raw("print(6*7)")
        assert out == b"42\r\n"
        # long code: raw-paste is tried, refused (the banner again), and never tried again;
        # plain raw mode paces it into the board's 256-byte UART buffer.
        line = "t += 1  # " + "-" * 40 + "\n"
        assert c.exec("t = 0\n" + line * 40 + "print(t)") == "40\r\n"
        assert c.raw_paste is False
        assert c.exec("t = 0\n" + line * 20 + "print(t)") == "20\r\n"
        with pytest.raises(DeviceError) as info:
            c.exec("1//0")
        assert info.value.exc_type == "ZeroDivisionError"
        assert info.value.traceback.startswith("Traceback (most recent call last):\n")
        c.exec("gone = 1")
        c.soft_reset()
        assert c.eval("'gone' in globals()") is False
        with pytest.raises(DeviceTimeout):
            c.exec("while True:\n    pass", timeout=0.3)
        assert c.eval("[1, 2.5, None]") == [1, 2.5, None]


def test_reconnect_after_the_port_was_reopened(comm: Communicator) -> None:
    comm.exec("kept = 7")
    comm.reconnect(timeout=5)
    assert comm.eval("kept") == 7  # a reopened port does not reset the board


_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.integers() | st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(value=_values)
def test_parse_literal_reads_back_any_repr(value: object) -> None:
    # MicroPython writes these the way CPython does; inf is bare, as on the board.
    assert parse_literal(repr(value)) == value


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_parse_literal_raises_only_value_error(text: str) -> None:
    try:
        parse_literal(text)
    except ValueError as exc:
        assert "\n" not in str(exc)
