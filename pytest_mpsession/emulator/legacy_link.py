"""What the link of an old, small board does differently (the ``legacy`` profile's quirks).

Sans-IO pieces the link uses when a profile asks for them: a UART receive buffer of a few
hundred bytes that overflows when the host sends faster than the REPL reads (``rx_buffer``,
``rx_rate``), and ``\\r\\n`` for every ``\\n`` the board prints (``crlf``).  (The raw REPL
without raw-paste is the link's own, by ``Profile.raw_paste``.)
"""

from __future__ import annotations

import re

__all__ = ["CrlfOutput", "ReceiveBuffer"]

_LONE_LF = re.compile(rb"(?<!\r)\n")


class ReceiveBuffer:
    """A small UART receive buffer: what the board cannot take in time is lost."""

    def __init__(self, size: int, rate: int) -> None:
        self.size = size
        self.rate = rate  # bytes per second the REPL empties it at a prompt
        self.level = 0.0
        self._time = 0.0
        self.overruns = 0

    def take(self, data: bytes, now: float, *, running: bool) -> bytes:
        """What of ``data`` fits; at a prompt the REPL has emptied the buffer meanwhile,
        running code does not read it (unless it reads stdin), so then it only fills up."""
        if not running:
            self.level = max(0.0, self.level - (now - self._time) * self.rate)
        self._time = now
        room = int(self.size - self.level)
        if room < len(data):
            self.overruns += 1
            data = data[: max(room, 0)]
        self.level += len(data)
        return data

    def emptied(self) -> None:
        """The REPL read what waited (the code ended)."""
        self.level = 0.0


class CrlfOutput:
    """``\\n`` becomes ``\\r\\n`` in the board's output, across chunk boundaries."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self, data: bytes) -> bytes:
        out = _LONE_LF.sub(b"\r\n", data)
        if data[:1] == b"\n" and self._last == 0x0D:
            out = out[1:]  # the previous chunk ended with the "\r" of this pair
        self._last = data[-1]
        return out
