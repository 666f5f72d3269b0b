"""Fuzzing the link: any bytes a host can send never wedge the board (issue 13).

Random writes (control bytes, REPL sequences, noise; at a prompt, in the middle of a line,
while code runs) come between valid exchanges; after each burst the host resynchronises as
a careful client does (end whatever was being received, interrupt, enter the raw REPL) and
the next valid exchange must always be answered.  Seeded: a failure names its seed and the
bytes that led to it.
"""

from __future__ import annotations

import random
import time

import pytest
import serial

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(300)

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
ROUNDS = 30
# what a burst is made of: REPL control bytes and sequences weigh more than noise
PIECES = [
    b"\x01",
    b"\x02",
    b"\x03",
    b"\x04",
    b"\x05",
    b"\x05A\x01",
    b"\x03\x02",
    b"\x02\x03",
    b"\x01\x04",
    b"\r",
    b"\n",
    b"\r\n",
    b"print(1)",
    b"while True:\n pass\n",
    b"import sys\nsys.exit()\n",
    b"x = '",
    b"def f(:",
    b"A",
]


def burst(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.7:
            out += rng.choice(PIECES)
        else:
            out += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 16)))
    return out


def drain_quiet(port: serial.Serial, quiet: float = 0.3, limit: float = 10.0) -> bytes:
    """Read until the board has been silent for ``quiet`` seconds (at most ``limit``)."""
    got = b""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        port.timeout = quiet
        chunk = port.read(4096)
        if not chunk:
            break
        got += chunk
    return got


def resync_and_exchange(port: serial.Serial, n: int) -> bytes:
    """End what is being received, interrupt (again, as a careful client does: a Ctrl-C
    that comes while the board compiles is a byte, not an interrupt, on a board too), enter
    the raw REPL, run one line."""
    port.write(b"\x04")
    for attempt in range(4):
        port.write(b"\r\x03\x03")
        got = drain_quiet(port)
        if attempt and (not got or got.endswith((b">>> ", b">"))):
            break
    port.write(b"\x01")
    buf = b""
    end = time.monotonic() + 10
    while not buf.endswith(RAW_BANNER) and time.monotonic() < end:
        port.timeout = max(0.0, end - time.monotonic())
        buf += port.read(max(1, port.in_waiting))
    assert buf.endswith(RAW_BANNER), buf[-300:]
    port.write(f"print({n} * 3)".encode() + b"\x04")
    reply = b""
    end = time.monotonic() + 10
    while not reply.endswith(b"\x04>") and time.monotonic() < end:
        port.timeout = max(0.0, end - time.monotonic())
        reply += port.read(max(1, port.in_waiting))
    return reply


@pytest.mark.parametrize(
    ("profile", "seed"),
    [("generic", 1), ("generic", 6), ("legacy", 3), ("unix", 13), ("stm32", 10)],
)
def test_random_writes_never_wedge_the_board(profile: str, seed: int) -> None:
    rng = random.Random(seed)
    with PtyBoard(profile) as board:
        port = serial.serial_for_url(board.path, timeout=1)
        history: list[bytes] = []
        try:
            for n in range(ROUNDS):
                where = rng.random()
                if where < 0.3:
                    # while code runs
                    port.write(b"\x01")
                    drain_quiet(port, 0.1, 2)
                    port.write(b"while True:\n x = 1\n\x04")
                    drain_quiet(port, 0.05, 1)
                elif where < 0.5:
                    port.write(b"\x02")  # at the friendly prompt
                    drain_quiet(port, 0.1, 2)
                data = burst(rng)
                history.append(data)
                port.write(data)
                try:
                    reply = resync_and_exchange(port, n)
                except AssertionError as exc:
                    raise AssertionError(
                        f"seed {seed}, round {n}: wedged after {history[-3:]!r}: {exc}"
                    ) from None
                expected = b"OK" + str(n * 3).encode()
                assert reply.startswith(expected), (
                    f"seed {seed}, round {n}: no answer after {history[-3:]!r}: {reply!r}"
                )
        finally:
            port.close()
