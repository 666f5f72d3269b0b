"""Fault-injection soak: many board calls through an emulated board with seeded faults.

Every call evaluates a distinct sum of two 9-digit numbers, so a wrong value cannot hide
(and every 25th call, through a session, writes a file of random bytes and reads it
back): each call either
returns exactly its own answer or raises a typed error (within its timeout plus the
recovery time), and every error is matched to a fault the emulator injected during that
very call (its counters), so no failure is left over from an earlier fault.

Run standalone for the README's figures::

    python tests/benchmarks/soak.py                    # 10,000 calls, seed 1
    python tests/benchmarks/soak.py --calls 2000 --seed 7 --json

``tests/test_soak.py`` runs the same soak under pytest.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_mpsession.communicator import BoardFault, Communicator
from pytest_mpsession.errors import (
    DeviceConnectionError,
    DeviceTimeout,
    MpSessionError,
    ProtocolError,
)
from pytest_mpsession.session.errors import ResourceCleanupError

#: the faults of issues 6 and 12: 1% garbage bytes, 0.1% of the host's bytes lost on the way,
#: 0.1% disconnects, resets and hangs
FAULTS = "drop=0.001&garbage=0.01&disconnect=0.001&reset=0.001&hang=0.001"
#: the emulator's counters of injected faults
INJECTED = ("garbage", "disconnects", "fault_resets", "hangs")


@dataclass
class SoakResult:
    """What a soak saw. ``outcomes``: calls per outcome (``ok`` or the error class, with the
    recovery step that brought the board back and whether its RAM was lost); ``injected``:
    faults the emulated boards injected; ``problems``: calls that broke the contract (must
    be empty)."""

    url: str
    calls: int
    timeout: float
    recovery_timeout: float
    elapsed: float = 0.0
    max_call: float = 0.0
    max_failed_call: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)
    boards: int = 1
    resets_counted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        """Calls that returned their right answer."""
        return self.outcomes.get("ok", 0)

    def table(self) -> str:
        """A markdown summary for the README."""
        rows = [
            f"| calls | {self.calls:,} |",
            f"| url | `{self.url}` |",
            f"| call timeout / recovery budget | {self.timeout:g} s / "
            f"{self.recovery_timeout:g} s |",
            f"| elapsed | {self.elapsed:.1f} s ({self.calls / self.elapsed:,.0f} calls/s) |",
            f"| right answers | {self.ok:,} |",
        ]
        for name, n in sorted(self.outcomes.items()):
            if name != "ok":
                rows.append(f"| {name} | {n} |")
        rows += [
            f"| wrong values | {sum('wrong value' in p for p in self.problems)} |",
            f"| faults injected | {', '.join(f'{k} {v}' for k, v in self.injected.items())} |",
            f"| emulated boards behind the port | {self.boards} |",
            f"| resets counted (reset_count) | {self.resets_counted} |",
            f"| slowest call / slowest failed call | {self.max_call:.2f} s / "
            f"{self.max_failed_call:.2f} s |",
            f"| contract violations | {len(self.problems)} |",
        ]
        return "| soak | |\n|---|---|\n" + "\n".join(rows)


def _injected(link: Any) -> int:
    return sum(link.stats[name] for name in INJECTED)


def run_soak(
    calls: int = 10_000,
    seed: int = 1,
    *,
    faults: str = FAULTS,
    timeout: float = 1.0,
    recovery_timeout: float = 2.0,
) -> SoakResult:
    """Run the soak; see the module docstring. Nothing is printed."""
    url = f"mpmock://generic?seed={seed}&{faults}"
    result = SoakResult(url, calls, timeout, recovery_timeout)
    outcomes: collections.Counter[str] = collections.Counter()
    injected: collections.Counter[str] = collections.Counter()
    allowed = timeout + recovery_timeout + 1.0  # + scheduling slack on a busy machine
    start = time.monotonic()
    rng = random.Random(seed)
    # Lost bytes are not counted by the emulator: with drop= an error may come without a
    # counted fault, but must still be a typed board fault (never a wrong value).
    uncounted = "drop=" in faults
    comm = Communicator.open(url, timeout=10)
    comm.recovery_timeout = recovery_timeout
    links: list[Any] = []

    def failed(i: int, exc: BaseException, took: float, link: Any, before: int) -> None:
        result.max_failed_call = max(result.max_failed_call, took)
        name = type(exc).__name__
        recovery = getattr(exc, "recovery", None)
        if recovery is not None and recovery.steps:
            name += f" (recovered by {recovery.steps[-1]}"
            name += ", RAM lost)" if recovery.ram_lost else ")"
        outcomes[name] += 1
        if not isinstance(exc, BoardFault | DeviceTimeout):
            result.problems.append(f"call {i}: untyped error {exc!r}")
        elif not getattr(exc, "recovered", True):
            result.problems.append(f"call {i}: not recovered: {exc}")
        now = comm._transport._ser.link
        if now is link and _injected(link) == before and not uncounted:
            result.problems.append(f"call {i}: error without an injected fault: {exc}")
        if took > allowed:
            result.problems.append(f"call {i}: took {took:.2f} s: {exc}")

    try:
        for i in range(calls):
            link = comm._transport._ser.link
            if not links or links[-1] is not link:
                links.append(link)
            before = _injected(link)
            t0 = time.monotonic()
            a, b = rng.randrange(10**8, 10**9), rng.randrange(10**8, 10**9)
            try:
                if i % 25 == 24:
                    files.append(i)
                    value: object = _file_round_trip(comm, rng, timeout)
                    expected: object = True
                else:
                    value = comm.eval(f"{a}+{b}", timeout=timeout)
                    expected = a + b
            except (DeviceConnectionError, ProtocolError, DeviceTimeout) as exc:
                failed(i, exc, time.monotonic() - t0, link, before)
                took = time.monotonic() - t0
            else:
                took = time.monotonic() - t0
                if value != expected:
                    result.problems.append(f"call {i}: wrong value {value!r}")
                else:
                    outcomes["ok"] += 1
            result.max_call = max(result.max_call, took)
        result.resets_counted = comm.reset_count
    finally:
        for link in links:
            for name in INJECTED:
                injected[name] += link.stats[name]
        comm.close()
    result.elapsed = time.monotonic() - start
    result.outcomes = dict(outcomes)
    result.injected = dict(injected)
    result.boards = len(links)
    return result


files: list[int] = []


def _file_round_trip(comm: Communicator, rng: random.Random, timeout: float) -> bool:
    """Write a file of random bytes through a session and read it back: True when the
    bytes are the same (any error is raised as it is, one of a board fault's types)."""
    from pytest_mpsession import DeviceSessionManager

    data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
    manager = DeviceSessionManager(comm)
    session = manager.create_session(timeout=timeout)
    try:
        session.fs.write("soak.bin", data)
        same = session.fs.read("soak.bin") == data
    except MpSessionError as exc:
        _raise_cause(exc)
        raise
    finally:
        try:
            session.cleanup()
        except ResourceCleanupError as exc:
            _raise_cause(exc)
    return same


def _raise_cause(exc: MpSessionError) -> None:
    """A session's wrapping errors hold the board fault underneath: raise that."""
    causes = exc.errors if isinstance(exc, ResourceCleanupError) else [exc.__cause__]
    for cause in causes:
        if isinstance(cause, DeviceConnectionError | ProtocolError | DeviceTimeout):
            raise cause


def main(argv: list[str] | None = None) -> int:
    """Command line: run a soak and print its figures; exit status 1 on a violation."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--faults", default=FAULTS, help=f"mpmock fault options (default {FAULTS})")
    ap.add_argument("--timeout", type=float, default=1.0, help="per-call timeout, s")
    ap.add_argument("--recovery-timeout", type=float, default=2.0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    result = run_soak(
        args.calls,
        args.seed,
        faults=args.faults,
        timeout=args.timeout,
        recovery_timeout=args.recovery_timeout,
    )
    if args.json:
        sys.stdout.write(json.dumps(asdict(result), indent=2) + "\n")
    else:
        sys.stdout.write(result.table() + "\n")
        for problem in result.problems[:20]:
            sys.stdout.write(f"PROBLEM: {problem}\n")
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
