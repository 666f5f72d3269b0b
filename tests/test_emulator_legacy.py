"""The board around the interpreter: boot.py/main.py at reset (issue 13), a legacy board as
a 1.9.2 micro:bit has it, no wrapper artefacts on any profile (issue 14)."""

from __future__ import annotations

import pytest

from pytest_mpsession.emulator import PtyBoard
from tests.test_emulator_ctrl import read_past

pytestmark = pytest.mark.timeout(60)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"


SCRIPTS = (
    "f=open('boot.py','w');f.write(\"print('boot ran')\\nB=1\\n\");f.close()\n"
    "f=open('main.py','w');f.write(\"print('main ran', B)\\nM=2\\nx=1/0\\n\");f.close()"
)


@pytest.mark.parametrize("profile", ["generic", "esp32", "legacy"])
def test_boot_and_main_run_at_reset(profile: str, raw_repl: type) -> None:
    with PtyBoard(profile, baudrate=115200) as board:
        c = raw_repl(board.path)
        c.enter_raw()
        for line in SCRIPTS.splitlines():
            c.exec(line)
        # a soft reset in the raw REPL: boot.py always; main.py on a current board only
        # when it comes up in the friendly REPL (the 1.9.2 micro:bit too)
        c.serial.write(b"\x04")
        got = read_past(c.serial, RAW_BANNER)
        assert b"boot ran" in got
        assert b"main ran 1" not in got, got
        # a soft reset in the friendly REPL: both, main.py's error shown as the board does
        c.serial.write(b"\x02")
        read_past(c.serial, b">>> ")
        c.serial.write(b"\x04")
        got = read_past(c.serial, b"for more information.\r\n>>> ")
        assert b"boot ran" in got and b"main ran 1" in got
        assert b'File "main.py", line 3, in <module>' in got
        assert b"_mpmock" not in got
        c.serial.write(b"print(B + M)\r")
        assert b"3" in read_past(c.serial, b">>> ")
        # a main.py that never ends is interrupted by Ctrl-C, as on a board
        c.enter_raw()
        c.exec("f=open('main.py','w');f.write('while True:\\n pass\\n');f.close()")
        c.serial.write(b"\x02")
        read_past(c.serial, b">>> ")
        c.serial.write(b"\x04")
        read_past(c.serial, b"boot ran")
        c.serial.write(b"\x03")
        got = read_past(c.serial, b">>> ")
        assert b"KeyboardInterrupt" in got


LEGACY = [
    ("import json", "ImportError"),
    ("import re", "ImportError"),
    ("import hashlib", "ImportError"),
    ("import binascii", "ImportError"),
    ("import io", "ImportError"),
    ("import errno", "ImportError"),
    ("import select", "ImportError"),
    ("import framebuf", "ImportError"),
    ("import cmath", "ImportError"),
    ("import microbit; print(microbit.display)", "<"),
    (
        "import os; print(sorted(n for n in dir(os) if n[0] != '_'))",
        "['listdir', 'remove', 'size', 'uname']",
    ),
    ("open('nope')", "OSError: file not found"),
    ("import os; os.size('nope')", "OSError: file not found"),
    ("import sys; print(hasattr(sys, 'path'), hasattr(sys, 'maxsize'))", "False False"),
    ("import time; print(hasattr(time, 'time'), hasattr(time, 'localtime'))", "False False"),
    ("import time; print(time.ticks_add(0, -1))", str((1 << 30) - 1)),
    ("import os; print(os.uname().release)", "1.0.1"),
    ("import sys; print(sys.implementation)", "version=(1, 9, 2))"),
    ("exec('@micropython.native\\ndef f(): pass')", "invalid micropython decorator"),
    # recursion stops after a handful of calls, as on the board (the exact depth is a listed
    # difference in tests/test_legacy_fidelity.py)
    (
        "def f(n):\n try:\n  return f(n + 1)\n except RuntimeError:\n  return n\nprint(f(0) < 10)",
        "True",
    ),
]


@pytest.mark.parametrize(("code", "expected"), LEGACY)
def test_legacy_is_a_192_microbit(code: str, expected: str, raw_repl: type) -> None:
    with PtyBoard("legacy", baudrate=115200) as board:
        c = raw_repl(board.path)
        c.enter_raw()
        out, err = c.exec_raw(code)
        text = (out + err).decode()
        assert expected in text, text
        assert "_mpmock" not in text and "_Module" not in text


@pytest.mark.parametrize("profile", ["unix", "generic", "esp32", "rp2", "stm32", "legacy"])
def test_no_wrapper_artefacts(profile: str, raw_repl: type) -> None:
    with PtyBoard(profile, baudrate=115200) as board:
        c = raw_repl(board.path)
        c.enter_raw()
        if profile == "legacy":
            # the 1.9.2 micro:bit has no sys.modules at all: the name must be missing there too
            _out, err = c.exec_raw("import sys\nprint(sys.modules)")
            assert b"AttributeError" in err and b"'modules'" in err, err
            assert b"_mpmock" not in err and b"_Module" not in err, err
        else:
            text = c.exec("import sys\nprint(sys.modules)")
            assert text.strip() == "{}", text
        text = c.exec("import os, machine\nprint(os, machine)")
        assert text.strip() == "<module 'os'> <module 'machine'>", text
        if profile != "legacy":
            assert c.exec("import sys\nprint(repr(sys.path[0]))").strip() == "''"
        _out, err = c.exec_raw("import nosuchmod")
        assert b"_mpmock" not in err and err.count(b"File") == 1, err


def test_crlf_output_tells_the_codes_output_from_the_repls() -> None:
    # sans-IO: the code's output gets "\r\n" for every "\n" (as 1.9.2's cooked stdout),
    # the REPL's own text only for a lone "\n"; across chunk boundaries
    from pytest_mpsession.emulator.legacy_link import CrlfOutput

    crlf = CrlfOutput()
    assert crlf(b"\r\nraw REPL; CTRL-B to exit\r\n>") == b"\r\nraw REPL; CTRL-B to exit\r\n>"
    crlf.exchange(2)  # raw REPL: output, \x04, traceback, \x04
    assert crlf(b"OKa\r") + crlf(b"\nb\n\x04Trace\r\n") == b"OKa\r\r\nb\r\n\x04Trace\r\r\n"
    assert crlf(b"E\n\x04>") == b"E\r\n\x04>"
    assert crlf(b"soft reboot\r\n") == b"soft reboot\r\n"  # the REPL's again
    crlf.exchange(2)
    crlf.reset()  # a reboot in the middle of the reply: the boot text is the REPL's
    assert crlf(b"\r\nMicroPython\r\n") == b"\r\nMicroPython\r\n"
    # friendly REPL: the echo's line end, then the code's output up to the next prompt
    crlf.line_entered()
    assert crlf(b"print(1)\r") + crlf(b"\na\r\nb\n>") == b"print(1)\r\na\r\r\nb\r\n>"
    assert crlf(b">> x\r\n") == b">> x\r\n"  # the prompt came: the echo of the next line
    crlf.line_entered()
    assert crlf(b"for i in x:\r\n..") + crlf(b". \r\n") == b"for i in x:\r\n... \r\n"
