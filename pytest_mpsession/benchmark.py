"""Benchmarks timed by the board's own clock, through pytest-benchmark (the work; the
fixture and hooks are :mod:`pytest_mpsession.plugin.benchmark`).

``device_benchmark(code, setup=None)`` runs ``setup`` once, then ``code`` for
pytest-benchmark's rounds. Each round is one exchange with the board, and the board times the
code itself with ``time.ticks_us`` / ``time.ticks_diff`` (wrap-safe), so the link is not in
the figure; the round trip of each exchange is kept in the benchmark's ``extra_info``.

How the board's times reach pytest-benchmark (its tables, ``--benchmark-json``,
``--benchmark-autosave``, ``--benchmark-compare``, ``--benchmark-compare-fail``): through its
public ``timer`` option. Every ``device_benchmark`` test gets, at collection, a
``@pytest.mark.benchmark(timer=BoardClock())`` merged into its own ``benchmark`` marker; the
:class:`BoardClock` is a clock that only moves when a round comes back, by the time the board
measured. pytest-benchmark's ``pedantic`` mode reads the timer right before and right after
each call of the target (one round on the board), so the duration it stores for the round is
exactly the board's figure. Nothing of pytest-benchmark's private state is touched.

The board (firmware, platform, port) goes into the saved machine info
(``pytest_benchmark_update_machine_info``) under ``"mpsession_board"``. pytest-benchmark
compares machine infos at configure time, before any board is open: for that comparison the
saved board is taken as it is (so the same board does not warn every run), and the boards
are compared once a device benchmark ran; a difference is one line in the terminal summary.

Board code here runs on MicroPython 1.9 with 16 KB of RAM: no f-strings, one-space
indentation, a few short lines.
"""

from __future__ import annotations

import copy
import math
import statistics
import textwrap
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from pytest_mpsession.errors import DeviceError
    from pytest_mpsession.session.session import DeviceSession

__all__ = [
    "MACHINE_INFO_KEY",
    "NOT_USED_MESSAGE",
    "BoardClock",
    "DeviceBenchmark",
    "RoundsPolicy",
    "board_facts",
]

#: the key of the board's facts in pytest-benchmark's machine info
MACHINE_INFO_KEY = "mpsession_board"

#: printed by the board right before a figure (what the session core's results use too)
MARK = "\x1e"

# Find the board's microsecond clock once per benchmark: ``utime`` on old firmware, ``time``
# on new. Prints the tick period (ticks_add(0, -1) + 1; 0 when the board cannot say) or -1
# when the board has no ticks_us/ticks_diff. Collects the setup's garbage first: on a 16 KB
# board the rounds' compiles need the heap in one piece, not fragmented by the setup.
CLOCK_PROBE = (
    "_mpb_G=__import__('gc')\n"
    "_mpb_G.collect()\n"
    "_mpb_m=-1\n"
    "try:\n"
    " try:\n"
    "  _mpb_T=__import__('utime')\n"
    " except ImportError:\n"
    "  _mpb_T=__import__('time')\n"
    " _mpb_T.ticks_us\n"
    " _mpb_T.ticks_diff\n"
    " _mpb_m=0\n"
    " _mpb_m=_mpb_T.ticks_add(0,-1)+1\n"
    "except (ImportError,AttributeError):\n"
    " pass\n"
    "print('\\x1e%d'%_mpb_m)\n"
)

# One round: the code between two reads of the clock. The prologue is one line (board
# tracebacks are moved back by it) and the whole text is compiled before it runs, so the
# compile is not in the figure; the figure is printed after the code's own output. Then the
# board collects the round's garbage, outside the figure: no round pays for an earlier one's
# garbage, and the next round's compile finds the heap in one piece (without it a 16 KB
# board fails to find 1 KB after a few rounds).
ROUND_PROLOGUE = "_mpb_t=_mpb_T.ticks_us()\n"
ROUND_EPILOGUE = (
    "\n_mpb_t=_mpb_T.ticks_diff(_mpb_T.ticks_us(),_mpb_t)\nprint('\\x1e%d'%_mpb_t)\n"
    "_mpb_G.collect()\n"
)

#: when the board cannot tell its tick period: the smallest in use (2**30 us, ~18 minutes)
DEFAULT_TICKS_PERIOD = 1 << 30

NOT_USED_MESSAGE = "Benchmark fixture was not used at all in this test"


class BoardClock:
    """A pytest-benchmark ``timer`` that reads the board's clock: seconds of board time.

    It stands still on the host and moves on by the board's own figure each time a round
    comes back (:meth:`advance`), so the difference pytest-benchmark takes around a round is
    what the board measured, without the link.
    """

    __name__ = "board_ticks_us"

    def __init__(self) -> None:
        self._us = 0

    def advance(self, us: int) -> None:
        """Move the clock on by ``us`` microseconds of board time."""
        self._us += us

    def __call__(self) -> float:
        return self._us / 1e6

    def __repr__(self) -> str:
        return "board time.ticks_us"


@dataclass(frozen=True)
class RoundsPolicy:
    """How many rounds, from pytest-benchmark's own options (the test's ``benchmark`` marker
    first, then the command line): at least ``min_rounds``, and as many as fit in
    ``max_time`` seconds of wall time (a board round's cost is mostly the link)."""

    min_rounds: int = 5
    max_time: float = 1.0
    warmup: bool = False
    warmup_iterations: int = 100000

    @classmethod
    def from_config(cls, config: pytest.Config, marker: pytest.Mark | None) -> RoundsPolicy:
        """The policy of one test: marker kwargs over ``--benchmark-*`` options."""
        kw = dict(marker.kwargs) if marker is not None else {}

        def opt(name: str, default: Any) -> Any:
            if name in kw:
                return kw[name]
            return config.getoption(f"benchmark_{name}", default)

        return cls(
            min_rounds=int(opt("min_rounds", 5)),
            max_time=float(opt("max_time", 1.0)),
            warmup=bool(opt("warmup", False)),
            warmup_iterations=int(opt("warmup_iterations", 100000)),
        )

    def rounds(self, round_trip: float) -> int:
        """Rounds for a code whose one round took ``round_trip`` seconds of wall time."""
        fit = math.ceil(self.max_time / max(round_trip, 1e-6))
        return max(self.min_rounds, min(fit, 10**6))

    def warmup_rounds(self, rounds: int) -> int:
        """Uncounted rounds before the timed ones (besides the first, calibrating, round)."""
        return min(rounds, self.warmup_iterations) if self.warmup else 0


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s >= 1 else f"{s * 1000:.1f} ms"


def _fail(message: str) -> NoReturn:
    pytest.fail(f"device_benchmark: {message}", pytrace=False)


def _moved(
    err: DeviceError, *, lines: int = 0, last: int = 0, file: str | None = None
) -> DeviceError:
    """``err`` with its board frames in ``<string>`` moved back by ``lines`` (the round's
    prologue) and no further than line ``last`` (a syntax error the parser found in the
    epilogue is the code's), or renamed to ``file`` (so the report does not map setup frames
    to the code's lines), keeping its type."""
    import re

    def frame(match: re.Match[str]) -> str:
        name = file if file is not None else "<string>"
        line = max(1, int(match.group(1)) - lines)
        return f'File "{name}", line {min(line, last) if last else line}'

    new = copy.copy(err)  # every attribute kept (exc_type, output, port, ...)
    new.traceback = re.sub(r'File "<string>", line (\d+)', frame, err.traceback)
    return new


class DeviceBenchmark:
    """The callable a test gets as ``device_benchmark``: times board code on the board.

    ``benchmark`` is the test's pytest-benchmark fixture, made with ``clock`` as its timer.
    """

    def __init__(
        self,
        benchmark: Any,
        session: DeviceSession,
        clock: BoardClock,
        policy: RoundsPolicy,
    ) -> None:
        self.benchmark = benchmark
        self.session = session
        self.clock = clock
        self.policy = policy
        #: wall time of each exchange of the counted rounds, in seconds
        self.round_trips: list[float] = []
        self._period = DEFAULT_TICKS_PERIOD
        self._used = False

    @property
    def extra_info(self) -> dict[str, Any]:
        """The benchmark's ``extra_info`` (saved with it): add what the figure depends on,
        such as the parameters of the code."""
        info: dict[str, Any] = self.benchmark.extra_info
        return info

    def __call__(self, code: str, setup: str | None = None) -> str:
        """Run ``setup`` once, then time ``code`` by the board's clock for pytest-benchmark's
        rounds; return what ``code`` printed (its last round)."""
        return self._run(code, setup)

    def _run(self, code: str, setup: str | None) -> str:
        from pytest_mpsession.errors import DeviceError

        if not isinstance(code, str):
            _fail(f"the code must be a str of board source, not {type(code).__name__}")
        if setup is not None and not isinstance(setup, str):
            _fail(f"setup must be a str of board source or None, not {type(setup).__name__}")
        if not code.strip():
            _fail("the code is empty: give the board code to time")
        if self._used:
            _fail(
                "called twice in one test; pytest-benchmark records one benchmark per test "
                "(parametrize the test to time several pieces of code)"
            )
        self._used = True
        body = textwrap.dedent(code.replace("\r\n", "\n"))
        if setup is not None and setup.strip():
            try:
                self.session.exec(textwrap.dedent(setup.replace("\r\n", "\n")))
            except DeviceError as exc:
                if type(exc) is not DeviceError:
                    raise  # a timeout or a board fault: the plugin's recovery needs it as is
                err = _moved(exc, file="<setup>")
                err.message = f"{exc.message} (in device_benchmark's setup)"
                raise err.with_traceback(None) from None
        self._find_clock()
        bench = self.benchmark
        text = ROUND_PROLOGUE + body + ROUND_EPILOGUE
        last_line = body.count("\n") + 1
        try:
            if bench.disabled:
                out: str = bench.pedantic(self._round, args=(text,))
                return out
            started = time.monotonic()
            self._round(text)  # calibrates: how long a round takes, link included
            rounds = self.policy.rounds(time.monotonic() - started)
            self.round_trips.clear()
            out = bench.pedantic(
                self._round,
                args=(text,),
                rounds=rounds,
                warmup_rounds=self.policy.warmup_rounds(rounds),
                iterations=1,
            )
        except DeviceError as exc:
            if type(exc) is not DeviceError:
                raise  # a timeout or a board fault: the plugin's recovery needs it as is
            # Raised here, not from pytest-benchmark's frames, so the report shows the
            # board's traceback at the lines of the test's code literal.
            raise _moved(exc, lines=1, last=last_line).with_traceback(None) from None
        self._record(rounds)
        return out

    def _find_clock(self) -> None:
        out = self.session.exec(CLOCK_PROBE)
        period = int(out.rpartition(MARK)[2].strip() or "-1")
        if period < 0:
            caps = self.session.manager.capabilities
            # reported at the test (as a marker's skip is), not at this line
            raise pytest.skip.Exception(
                f"device_benchmark: the board has no time.ticks_us/ticks_diff "
                f"({caps.describe()}); it cannot time code by its own clock",
                _use_item_location=True,
            )
        self._period = period or DEFAULT_TICKS_PERIOD

    def _round(self, text: str) -> str:
        t0 = time.monotonic()
        out = self.session.exec(text)
        wall = time.monotonic() - t0
        printed, mark, figure = out.rpartition(MARK)
        try:
            # abs(): firmware from before late 2016 (1.8.x) took ticks_diff(old, new), the
            # other way round; a round's time is never negative
            us = abs(int(figure.strip()))
        except ValueError:
            us = -1
        if not mark or us < 0:
            _fail(
                "the round ended before the board printed its time (did the code raise "
                f"SystemExit?); it printed {out[-200:]!r}"
            )
        # ticks_diff is exact across a wrap of the clock while the round is shorter than half
        # the tick period (2**29 us, ~9 minutes, on most boards); the board cannot tell a
        # longer one, so the host's clock says when that may have happened.
        if wall * 1e6 >= self._period // 2:
            _fail(
                f"a round took {_seconds(wall)} (round trip), longer than half the board's "
                f"tick period ({_seconds(self._period // 2 / 1e6)}): time.ticks_diff cannot "
                "measure it"
            )
        self.round_trips.append(wall)
        self.clock.advance(us)
        return printed

    def _record(self, rounds: int) -> None:
        trips = self.round_trips[-rounds:] if rounds else self.round_trips
        info = self.benchmark.extra_info
        info["clock"] = "board time.ticks_us"
        if trips:
            info["round_trip_min_s"] = min(trips)
            info["round_trip_median_s"] = statistics.median(trips)
            info["round_trip_max_s"] = max(trips)


def board_facts(session: DeviceSession) -> dict[str, str]:
    """What the machine info says of the board: firmware, platform, machine, port."""
    manager = session.manager
    caps = manager.capabilities
    return {
        "implementation": caps.implementation,
        "firmware": caps.firmware_version,
        "platform": caps.device_type,
        "machine": caps.machine,
        "port": manager.communicator.port,
    }
