"""The emulated board against a plain raw-REPL client: the engine, the relay, the profiles."""

from __future__ import annotations

import time

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(60)


def test_unix_port_raw_repl_roundtrip(unix_port: str, raw_repl: type) -> None:
    c = raw_repl(unix_port)
    assert c.enter_raw().endswith(b"raw REPL; CTRL-B to exit\r\n>")
    assert c.exec("print(6*7)") == "42\n"
    out, err = c.exec_paste("print('x' * 3)")
    assert (out, err) == (b"xxx\n", b"")


def test_soft_reset_reboots_into_raw_repl(board_port: str, raw_repl: type) -> None:
    c = raw_repl(board_port)
    c.enter_raw()
    c.exec("x = 5")
    c.serial.write(b"\x04")
    reply = c.read_until(b"raw REPL; CTRL-B to exit\r\n>")
    assert reply.startswith(b"OK\r\n") and b"soft reboot\r\n" in reply
    _out, err = c.exec_raw("print(x)")
    assert b"NameError" in err


def test_ctrl_c_interrupts_running_code(board_port: str, raw_repl: type) -> None:
    c = raw_repl(board_port)
    c.enter_raw()
    c.serial.write(b"while True:\n pass\n\x04")
    c.read_until(b"OK")
    c.serial.write(b"\x03")
    reply = c.read_until(b"\x04>", timeout=5)
    assert b"KeyboardInterrupt" in reply
    assert c.exec("print(1)").strip() == "1"


def test_ctrl_c_at_prompt_does_not_kill(board_port: str, raw_repl: type) -> None:
    c = raw_repl(board_port)
    c.enter_raw()
    c.exec("y = 7")
    for _ in range(3):
        c.serial.write(b"\x03")
    assert c.exec("print(y)").strip() == "7"


def test_board_starts_fast() -> None:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        with PtyBoard("unix"):
            times.append(time.perf_counter() - t)
    times.sort()
    assert times[2] < 0.25, times  # the real goal (< 50 ms) is in tests/benchmarks


def test_a_long_program_through_mpmock_never_waits_on_the_relay() -> None:
    # 27 KB of code goes through the wrapper's stdin faster than the engine's input takes
    # it: what is left over must be moved on at once, not when the relay thread next wakes
    # for something else (it waited about 6 s, past a 5 s call timeout).
    from pytest_mpsession.communicator import Communicator

    code = "n = 0\n" + ("n += 1\n# " + "y" * 59 + "\n") * 400 + "print(n)\n"
    with Communicator.open("mpmock://unix", timeout=5) as comm:
        for _ in range(3):
            assert comm.exec(code).strip() == "400"
        assert comm.last_recovery is None
