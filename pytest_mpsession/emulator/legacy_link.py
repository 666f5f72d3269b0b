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
    """A board's line ends, across chunk boundaries.

    A 1.9-era board prints what its code prints (and its tracebacks) through a "cooked"
    stdout that sends ``\\r\\n`` for every ``\\n``, also one right after a ``\\r`` (a
    printed ``'a\\r\\nb'`` arrives as ``a\\r\\r\\nb``); the REPL's own text (prompts,
    banners, the echo of a typed line) already has its ``\\r\\n``s.  The unix port sends
    ``\\n`` alone in both, so the link tells them apart by the REPL's framing:

    - raw REPL: :meth:`exchange` when code was sent; what follows up to the reply's last
      ``\\x04`` (the output part, ``\\x04``, the error part, ``\\x04``) is the code's;
    - friendly REPL: :meth:`line_entered` when a line was entered; after the echo's
      ``\\r\\n``, what comes up to the next prompt (``>>> `` or ``... ``) is the code's.

    Everything else is the REPL's: there only a lone ``\\n`` becomes ``\\r\\n``.
    """

    _PROMPTS = (b">>> ", b"... ")

    def __init__(self) -> None:
        self._last = 0
        self._eots = 0  # raw REPL: end bytes of the code's reply still to come
        self._line = 0  # friendly REPL: 1 the echo's line end to come, 2 the code's output
        self._tail = b""  # friendly REPL: the last bytes of the code's output (a prompt?)

    def exchange(self, eots: int) -> None:
        """Code was sent in the raw REPL: its reply ends with the ``eots``-th ``\\x04``."""
        self._eots = eots
        self._line = 0

    def line_entered(self) -> None:
        """A line was entered at the friendly prompt (it may run code)."""
        if not self._eots:
            self._line = 1
            self._tail = b""

    def reset(self) -> None:
        """The REPL starts afresh (a reboot): nothing of the code's is on its way."""
        self._eots = 0
        self._line = 0

    def __call__(self, data: bytes) -> bytes:
        out = bytearray()
        i, n = 0, len(data)
        while i < n:
            if self._eots:
                j = data.find(b"\x04", i)
                end = n if j < 0 else j + 1
                out += data[i:end].replace(b"\n", b"\r\n")
                if j >= 0:
                    self._eots -= 1
                i = end
            elif self._line == 2:
                j = self._prompt_end(data, i)
                end = n if j < 0 else j
                out += data[i:end].replace(b"\n", b"\r\n")
                if j >= 0:
                    self._line = 0
                i = end
            elif self._line == 1:
                j = data.find(b"\n", i)
                end = n if j < 0 else j + 1
                out += self._framing(data[i:end])
                if j >= 0:
                    self._line = 2
                i = end
            else:
                out += self._framing(data[i:])
                i = n
            self._last = data[i - 1]
        return bytes(out)

    def _framing(self, data: bytes) -> bytes:
        out = _LONE_LF.sub(b"\r\n", data)
        if data[:1] == b"\n" and self._last == 0x0D:
            out = out[1:]  # the previous chunk ended with the "\r" of this pair
        return out

    def _prompt_end(self, data: bytes, i: int) -> int:
        """Where the code's output ends in ``data`` (after a prompt), or -1."""
        seen = self._tail + data[i:]
        cut = len(self._tail)
        found = -1
        for prompt in self._PROMPTS:
            k = seen.find(prompt)
            if k >= 0 and (found < 0 or k < found):
                found = k
        if found < 0:
            self._tail = seen[-3:]
            return -1
        self._tail = b""
        return i + max(0, found + 4 - cut)
