"""What checking a one-line exec's code before it runs costs at the least (issue 12).

The checked exchange sends ``_mpsx(N,C,'x = 1')`` where the unchecked one sent ``x = 1``.
This script measures, on one real unix-port board behind a PTY and over one bare descriptor
(no session layer, no host-side parsing), the raw-REPL round trip of forms of the same
one-line exec that check more and more, the rounds of all forms interleaved:

- ``plain``: the code as it is (the unchecked exchange);
- ``literal``: ``exec('x = 1',globals())``: the code as data, compiled a second time: what
  any check of the code on the board needs before anything else;
- ``minimal check``: ``_c(C,'x = 1')``, a function that runs the code only when its
  checksum is ``C``: the least a check costs (no exchange number, no framed reply);
- ``mpsession``: the wrapper's call as the session sends it (exchange number, checksum,
  framed reply, the reserve kept while code runs);
- ``mpsession, no reserve``: the same with the wrapper's reserve set to 0.

Run: ``python tests/benchmarks/check_floor.py [rounds]`` (default 400). It prints the median
round trip of each form and its ratio to ``plain``.
"""

from __future__ import annotations

import os
import select
import statistics
import sys
import termios
import time
import tty
from collections.abc import Callable

from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.protocol import frame

PROMPT = b"\x04>"
CODE = "x = 1"


class RawBoard:
    """A raw-REPL board over a bare descriptor: send a line, read to the prompt."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        termios.tcflush(self.fd, termios.TCIOFLUSH)
        os.write(self.fd, b"\r\x03\x03\x01")
        self.read_until(b"raw REPL; CTRL-B to exit\r\n>", 10.0)

    def read_until(self, end: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        buf = b""
        while not buf.endswith(end):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError(f"no {end!r} from the board; got {buf[-80:]!r}")
            buf += os.read(self.fd, 4096)
        return buf

    def run(self, line: bytes, timeout: float = 5.0) -> bytes:
        """The reply to one raw-REPL exchange (``OK`` ... ``\\x04>``), checked for errors."""
        os.write(self.fd, line + b"\x04")
        reply = self.read_until(PROMPT, timeout)
        out, err = reply[2:].split(b"\x04")[:2]
        if err:
            raise RuntimeError(f"{line[:60]!r} failed on the board: {err.decode()}")
        return out

    def close(self) -> None:
        os.close(self.fd)


def forms(algo: str) -> dict[str, Callable[[int], bytes]]:
    """Each form's raw-REPL line for exchange ``n``."""
    data = CODE.encode()

    def mpsession(n: int) -> bytes:
        return frame.wire(n, CODE, 0, 0, algo)

    return {
        "plain": lambda n: data,
        "literal": lambda n: f"exec({CODE!r},globals())".encode(),
        "minimal check": lambda n: f"_c({frame.checksum(data, 0, algo)},{CODE!r})".encode(),
        "mpsession": mpsession,
    }


def measure(rounds: int) -> dict[str, float]:
    """Median round trip (seconds) of every form, and of the wrapper without its reserve."""
    with PtyBoard("unix") as pty:
        board = RawBoard(pty.path)
        try:
            out = board.run(frame.HASHER.encode())
            algo = chr(out[1])
            board.run(frame.WRAPPER.replace("{reserve}", "2048").encode())
            board.run(b"def _c(c,s):\n if _mpsh(s,0)==c:\n  exec(s,globals())")
            lines = forms(algo)
            times: dict[str, list[float]] = {name: [] for name in lines}
            times["mpsession, no reserve"] = []
            for i in range(rounds):
                n = i + 1
                for name, line in lines.items():
                    start = time.perf_counter()
                    board.run(line(n))
                    times[name].append(time.perf_counter() - start)
                board.run(b"_mps_s[2]=0")
                start = time.perf_counter()
                board.run(lines["mpsession"](n + rounds))
                times["mpsession, no reserve"].append(time.perf_counter() - start)
                board.run(b"_mps_s[2]=2048")
        finally:
            board.close()
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str]) -> int:
    rounds = int(argv[1]) if len(argv) > 1 else 400
    medians = measure(rounds)
    base = medians["plain"]
    print(f"one-line exec ({CODE!r}) on the unix port behind a PTY, {rounds} rounds, medians:")
    for name, t in medians.items():
        print(f"  {name:<24} {t * 1e6:7.1f} us  x{t / base:.2f}")
    print(f"  load: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
