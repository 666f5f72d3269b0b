"""Ctrl-C and Ctrl-B in one write while code runs never wedge the board (issue 13): the
Ctrl-C interrupts at once, the Ctrl-B is read by the REPL when the code has ended (as a
board's receive buffer keeps it), on every profile."""

from __future__ import annotations

import pytest
import serial

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(60)


def read_past(port: serial.Serial, marker: bytes, timeout: float = 10.0) -> bytes:
    """Read until ``marker`` has come (pyserial's ``read_until``: one deadline in all)."""
    port.timeout = timeout
    buf = bytes(port.read_until(marker))
    assert buf.endswith(marker), buf
    return buf


@pytest.mark.parametrize("profile", ["unix", "generic", "esp32", "rp2", "stm32", "legacy"])
@pytest.mark.parametrize("keys", [b"\x03\x02", b"\x03\x02\x01", b"\x02\x03", b"\x03\x01\x02"])
def test_interrupt_and_mode_keys_in_one_write(profile: str, keys: bytes, raw_repl: type) -> None:
    with PtyBoard(profile) as board:
        c = raw_repl(board.path, timeout=10)
        c.enter_raw()
        c.exec("kept = 7")
        for _ in range(3):
            c.serial.write(b"while True:\n pass\n\x04")
            c.read_until(b"OK")
            c.serial.write(keys)
            got = read_past(c.serial, b"\x04>")
            assert b"KeyboardInterrupt" in got
            # whatever mode the keys left it in, the board answers the next exchange
            c.enter_raw()
            assert c.exec("print(kept)").strip() == "7"
        assert board.link.stats["soft_resets"] == 0
