"""Fault injection of an emulated board's link, decided here and applied by the link.

Sans-IO: the link asks, this module answers from the board's options and one seeded random
generator (so a seed repeats the same faults): what becomes of the host's bytes (``drop``,
``disconnect_after``), of the board's (``disconnect_after``), and of each exchange
(``garbage``, ``reset``, ``hang``, ``disconnect``).  Line rate and latency are the link's
(they are time, not faults).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from pytest_mpsession.emulator.options import Options

__all__ = ["ExchangeFault", "Faults"]

#: the counter (in ``stats``) of each fault an exchange can meet
_STAT = {"reset": "fault_resets", "hang": "hangs", "disconnect": "disconnects"}
_FORCEABLE = tuple(_STAT)
_GARBAGE_ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .:=-_\r\n"


@dataclass(frozen=True)
class ExchangeFault:
    """What happens to one exchange: a burst of garbage before the reply (or None), then at
    most one of ``"reset"``, ``"hang"``, ``"disconnect"`` (or None: it runs)."""

    garbage: bytes | None
    fault: str | None


class Faults:
    """The faults of one board's link (``stats`` counts them, shared with the link)."""

    def __init__(self, options: Options, stats: collections.Counter[str]) -> None:
        self.options = options
        self.stats = stats
        self.rng = options.rng()
        if options.seed is not None:
            # (eight draws the board's id once took: seeded fault sequences stay the same)
            bytes(self.rng.getrandbits(8) for _ in range(8))
        self._bytes_seen = 0
        self.disconnected = False  # disconnect_after has happened
        #: faults a test asked for, one per coming exchange (see :meth:`force`)
        self._forced: collections.deque[str] = collections.deque()

    def force(self, fault: str) -> None:
        """Make the next exchange not yet given a forced fault meet ``fault`` (``"reset"``,
        ``"hang"`` or ``"disconnect"``), whatever the options say: a test puts a fault
        exactly where it needs it. The seeded random sequence is left as it is."""
        if fault not in _FORCEABLE:
            raise ValueError(f"unknown fault {fault!r}: use one of {', '.join(_FORCEABLE)}")
        self._forced.append(fault)

    def inbound(self, data: bytes) -> tuple[bytes, bool]:
        """The host's bytes after the link's faults, and whether the link drops now."""
        opts = self.options
        drop_now = False
        if opts.disconnect_after is not None and not self.disconnected:
            left = opts.disconnect_after - self._bytes_seen
            if left <= len(data):
                self.disconnected = True
                data = data[: max(left, 0)]
                drop_now = True
            else:
                self._bytes_seen += len(data)
        if opts.drop:
            rnd = self.rng.random
            data = bytes(b for b in data if rnd() >= opts.drop)
        return data, drop_now

    def outbound(self, data: bytes) -> tuple[bytes, bool]:
        """The board's bytes that still go over the link, and whether it drops after them."""
        limit = self.options.disconnect_after
        if limit is None or self.disconnected:
            return data, False
        left = limit - self._bytes_seen
        if left > len(data):
            self._bytes_seen += len(data)
            return data, False
        self.disconnected = True
        return data[: max(left, 0)], True

    def exchange(self) -> ExchangeFault:
        """The fate of the next exchange."""
        if self._forced:
            fault = self._forced.popleft()
            self.stats[_STAT[fault]] += 1
            return ExchangeFault(None, fault)
        opts = self.options
        if not opts.faulty:
            return ExchangeFault(None, None)
        rnd = self.rng.random
        garbage, disconnect, reset, hang = rnd(), rnd(), rnd(), rnd()
        burst = None
        if garbage < opts.garbage:
            k = self.rng.randint(1, 24)
            burst = bytes(self.rng.choice(_GARBAGE_ALPHABET) for _ in range(k))
            self.stats["garbage"] += 1
        if reset < opts.reset:
            self.stats["fault_resets"] += 1
            return ExchangeFault(burst, "reset")
        if hang < opts.hang:
            self.stats["hangs"] += 1
            return ExchangeFault(burst, "hang")
        if disconnect < opts.disconnect:
            self.stats["disconnects"] += 1
            return ExchangeFault(burst, "disconnect")
        return ExchangeFault(burst, None)
