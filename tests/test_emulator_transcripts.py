"""The recorded transcripts (shared/transcripts/) replayed against the emulator.

``legacy`` must answer as the 1.9.2 board did, byte for byte, apart from the language's own
error text (the engine is MicroPython 1.29: "divide by zero", not 1.9's "division by zero").
``generic`` and ``unix`` must answer as the unix port did, apart from what the board changes
on purpose: the banner, Ctrl-C interrupting running code, and the soft reset rebooting.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(60)

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "transcripts"
if not TRANSCRIPTS.is_dir():  # the repository checked out on its own (CI)
    TRANSCRIPTS = Path(__file__).resolve().parent / "transcripts"


def load(name: str) -> list[tuple[str, bytes, bytes | None]]:
    """Steps of a transcript: (title, host bytes, board bytes or None if not recorded)."""
    steps: list[tuple[str, bytes, bytes | None]] = []
    title = ""
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        if line.startswith("## "):
            title = line[3:]
        elif line.startswith("host -> board: "):
            steps.append((title, ast.literal_eval(line[15:]), None))
        elif line.startswith("board -> host: "):
            reply = ast.literal_eval(line[15:])
            if steps and steps[-1][2] is None and steps[-1][0] == title:
                steps[-1] = (title, steps[-1][1], reply)
            else:
                steps.append((title, b"", reply))
    return steps


def exchange(c: object, host: bytes, expected: bytes) -> bytes:
    port = c.serial  # type: ignore[attr-defined]
    if host:
        port.write(host)
    if not expected:
        port.timeout = 0.2
        return bytes(port.read(4096))
    import time

    deadline = time.monotonic() + 5
    got = b""
    while len(got) < len(expected) and time.monotonic() < deadline:
        port.timeout = max(0.0, deadline - time.monotonic())
        got += port.read(len(expected) - len(got))
    return got


needs_transcripts = pytest.mark.skipif(
    not TRANSCRIPTS.is_dir(), reason="shared/transcripts not found"
)


@needs_transcripts
def test_legacy_answers_as_the_192_board(raw_repl: type) -> None:
    steps = load("micropython-1.9.2-microbit.txt")
    assert len(steps) == 11
    with PtyBoard("legacy") as board:
        c = raw_repl(board.path)
        for title, host, reply in steps:
            assert reply is not None
            got = exchange(c, host, reply)
            expected = reply.replace(b"division by zero", b"divide by zero")
            assert got == expected, title


@pytest.mark.parametrize("profile", ["unix", "generic"])
@needs_transcripts
def test_current_boards_answer_as_the_unix_port(profile: str, raw_repl: type) -> None:
    steps = load("micropython-1.29-unix-port.txt")
    with PtyBoard(profile) as board:
        c = raw_repl(board.path)
        c.serial.write(b"\x02")  # power-on banner: the board's own
        banner = c.read_until(b">>> ")
        assert re.search(rb"MicroPython \S+ on \S+; .*\r\nType \"help\(\)\" for more", banner)
        for title, host, reply in steps:
            if title == "power-on" or reply is None:
                continue
            if "Ctrl-C byte while code runs" in title:
                # a board reads the byte: the KeyboardInterrupt the unix port only shows
                # after a SIGINT comes from the byte itself
                c.serial.write(host)
                got = c.read_until(b"\x04>")
                assert b"KeyboardInterrupt" in got, got
                continue
            if "SIGINT to the process" in title:
                continue
            if "soft reset" in title:
                c.serial.write(host)
                got = c.read_until(b"raw REPL; CTRL-B to exit\r\n>")
                assert got == reply + b"MPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"
                continue
            got = exchange(c, host, reply)
            assert got == reply, title
