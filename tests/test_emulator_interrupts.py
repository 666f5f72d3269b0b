"""The emulated board's reset line and Ctrl-C, against the real unix port.

- the modem lines drive the reset (EN) line as the usual two-transistor auto-reset circuit
  does (EN low while RTS is asserted and DTR is not; the board boots on EN's rising edge),
  and as a board with RTS wired straight to EN; opening the port never resets;
- a Ctrl-C that comes too late for its exchange's code is dropped with that exchange, never
  carried into the next exchange's code;
- a Ctrl-C during ``time.sleep()`` interrupts it and the board keeps its RAM (no restart of
  the engine), also when the host sends two of them at once.
"""

from __future__ import annotations

import pytest
import serial

from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.emulator.serial_mpmock import Serial as MockSerial
from pytest_mpsession.transport import Transport

pytestmark = pytest.mark.timeout(60)


def _open(url: str, *, dtr: bool = True, rts: bool = True) -> MockSerial:
    ser = serial.serial_for_url(url, do_not_open=True, timeout=5)
    assert isinstance(ser, MockSerial)
    ser.dtr = dtr
    ser.rts = rts
    ser.open()
    return ser


def _resets(ser: MockSerial) -> int:
    assert ser.link is not None
    return ser.link.stats["hard_resets"]


@pytest.mark.parametrize("dtr", [False, True])
@pytest.mark.parametrize("rts", [False, True])
def test_opening_the_port_never_resets(raw_repl: type, dtr: bool, rts: bool) -> None:
    ser = _open("mpmock://generic", dtr=dtr, rts=rts)
    try:
        ser.write(b"\r\x03")
        ser.read_until(b">>> ")
        assert _resets(ser) == 0
    finally:
        ser.close()


def test_auto_reset_circuit_pulse_is_one_hard_reset(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic")
    c.enter_raw()
    c.exec("kept = 1")
    ser = c.serial
    ser.dtr = False
    ser.rts = True  # EN low: held in reset
    assert _resets(ser) == 0
    ser.dtr = True  # both asserted: EN rises, the board boots
    ser.rts = True
    c.read_until(b">>> ", timeout=5)
    assert _resets(ser) == 1
    c.enter_raw()
    assert c.eval("'kept' in globals()") == "False"  # RAM gone
    assert _resets(ser) == 1  # restoring the lines made no second pulse


def test_lines_that_never_pull_en_low_do_not_reset(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic")
    c.enter_raw()
    c.exec("kept = 1")
    ser = c.serial
    ser.rts = False  # released since open: it never held EN low, so no pulse
    # DTR alone (esptool's IO0 line) never pulls EN low
    for dtr in (False, True, False, True):
        ser.dtr = dtr
    ser.rts = True  # both asserted: EN stays high
    assert _resets(ser) == 0
    assert c.eval("kept") == "1"


def test_plain_rts_pulse_resets_rts_wired_to_en(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic")
    c.enter_raw()
    ser = c.serial
    ser.rts = True
    ser.rts = False  # the release ends the reset pulse
    c.read_until(b">>> ", timeout=5)
    assert _resets(ser) == 1


def test_transport_pulse_reset_recovers_a_hung_board(raw_repl: type) -> None:
    t = Transport.open("mpmock://generic?seed=0&hang=1", timeout=5)
    try:
        ser = t._ser
        assert isinstance(ser, MockSerial) and ser.link is not None
        ser.write(b"\r\x01")
        ser.read_until(b"raw REPL; CTRL-B to exit\r\n>")
        ser.write(b"print(1)\x04")
        ser.timeout = 0.2
        assert ser.read(10) == b""  # hung: no answer at all
        assert ser.link.hung
        assert t.pulse_reset()
        ser.timeout = 5
        assert ser.read_until(b">>> ").endswith(b">>> ")
        assert not ser.link.hung
        assert ser.link.stats["hard_resets"] == 1
    finally:
        t.close()


def test_late_ctrl_c_never_reaches_the_next_exchange(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic")
    c.enter_raw()
    ser = c.serial
    late = 0
    for _ in range(50):
        # a Ctrl-C right behind quick code: it may interrupt that code or come too late
        ser.write(b"x = 1\x04\x03")
        first = c.read_until(b"\x04>")
        if b"KeyboardInterrupt" not in first:
            late += 1
        # the next exchange is sent at once, while a late Ctrl-C could still be pending
        out, err = c.exec_raw("import time\ntime.sleep_ms(5)\nprint('ok')")
        assert err == b"" and out == b"ok\n", (first, out, err)
    assert late > 0  # the race was met


@pytest.mark.parametrize("how", ["unix-pty", "generic-mpmock"])
@pytest.mark.parametrize("ctrl_c", [b"\x03", b"\x03\x03", b"\r\x03\x03"])
def test_ctrl_c_during_sleep_keeps_ram(raw_repl: type, how: str, ctrl_c: bytes) -> None:
    board = PtyBoard("unix") if how == "unix-pty" else None
    try:
        c = raw_repl(board.path if board is not None else "mpmock://generic")
        c.enter_raw()
        link = board.link if board is not None else c.serial.link
        c.exec("kept = 1")
        for i in range(50):
            c.serial.write(b"import time\nprint('go')\ntime.sleep(5)\x04")
            c.read_until(b"go\n")
            c.serial.write(ctrl_c)
            reply = c.read_until(b"\x04>", timeout=3)
            assert b"KeyboardInterrupt" in reply and b"soft reboot" not in reply, (i, reply)
            assert c.exec("print(kept)") == "1\n", i
        assert link.stats["interrupt_heals"] == 0
        assert link.stats["engine_starts"] == 1
    finally:
        if board is not None:
            board.close()


def test_banner_after_ctrl_b_is_the_boards_behind_other_prompts(raw_repl: type) -> None:
    # the prompts answering the CR and Ctrl-C sent with the Ctrl-B come before the banner:
    # the banner must still be the board's, however the engine's output is split
    c = raw_repl("mpmock://esp32")
    for _ in range(30):
        c.serial.write(b"\r\x03\x02")
        text = c.read_until(b"for more information.\r\n>>> ")
        assert b"with ESP32" in text and b"linux" not in text, text
