"""The speed targets as one markdown table: every figure beside its peer's, measured in one
run on this machine, with the target from the issues and whether it is met.

Run it alone, on a quiet machine (the load average is printed with the table)::

    python tests/benchmarks/report.py           # every section
    python tests/benchmarks/report.py --exec    # the exec rows only

It runs the measurements of the benchmark modules beside it (their helpers, not copies);
``python -m pytest tests/benchmarks -p no:xdist`` records the same figures with
pytest-benchmark.  Ratios are ours / peer; for the exec rows the ratio judged is the median
of the ratios paired round by round (the clients alternate, so load that comes and goes
hits both alike), and the ratio of the two medians is shown beside it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# the benchmark modules are not a package: import them from their folder, as pytest does
sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_bench_emulator as emulator
import test_bench_exec as exec_bench
import test_bench_pool as pool
import test_bench_session as session

from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.session import DeviceSessionManager


@dataclass
class Row:
    """One line of the table: our figure, the peer's (name and figure), the ratio ours /
    peer when there is a peer, the target in words, and whether it is met."""

    measurement: str
    ours: str
    peer: str
    ratio: float | None
    target: str
    met: bool
    note: str = ""


def ms(seconds: float) -> str:
    """Seconds as milliseconds, three decimals."""
    return f"{seconds * 1e3:.3f} ms"


def us(seconds: float) -> str:
    """Seconds as microseconds, one decimal."""
    return f"{seconds * 1e6:.1f} µs"


def exec_rows() -> list[Row]:
    """Our one-line exec and 27 KB program against mpremote's two read loops, and against
    the unchecked exchange of before (the checks' cost), on the unix port behind a PTY; the
    checks' cost again on ``mpmock://unix``."""
    rows = []
    for board in exec_bench.BOARDS:
        with (
            tempfile.TemporaryDirectory() as tmp,
            exec_bench.open_clients(Path(tmp), board) as clients,
        ):
            f = exec_bench.side_by_side(clients)
        rows += _exec_board_rows(board, f)
    return rows


def _exec_board_rows(board: str, f: dict[str, float]) -> list[Row]:
    where = "unix port on a PTY" if board == "pty" else "mpmock://unix"
    rows = []
    for what, label, targets in (
        (
            "one",
            "exec one line",
            {"mpsession-unchecked": 1.05, "mpremote-serial-device": 0.10, "mpremote": 1.0},
        ),
        (
            "27k",
            "exec 27 KB program",
            {"mpsession-unchecked": 1.05, "mpremote-serial-device": 1.0, "mpremote": 1.0},
        ),
    ):
        for peer, limit in targets.items():
            if f"{peer}/{what}" not in f:
                continue  # mpremote cannot open mpmock://
            ratio = f[f"ratio/{what}/{peer}"]
            of_medians = f[f"mpsession/{what}"] / f[f"{peer}/{what}"]
            if peer == "mpsession-unchecked":
                # the cost of the checked exchanges (issue 12): at most +5%
                rows.append(
                    Row(
                        f"{label} ({where}): checked vs the unchecked exchange of before",
                        ms(f[f"mpsession/{what}"]),
                        ms(f[f"{peer}/{what}"]),
                        ratio,
                        "+5% at most (≤ 1.05)",
                        ratio <= limit,
                        f" (of medians: {of_medians:.3f})",
                    )
                )
                continue
            path = "real-device path" if peer.endswith("serial-device") else "PTY path"
            target = "10x faster (≤ 0.10)" if limit < 1 else "no slower (≤ 1.00)"
            rows.append(
                Row(
                    f"{label} vs mpremote 1.29 SerialTransport, {path}",
                    ms(f[f"mpsession/{what}"]),
                    ms(f[f"{peer}/{what}"]),
                    ratio,
                    target,
                    ratio <= limit,
                    f" (of medians: {of_medians:.3f})",
                )
            )
    return rows


def emulator_rows() -> list[Row]:
    """``mpmock://`` against the bare port, raw-paste at 115200, start and soft reset."""
    rt = emulator.measure_round_trip()
    rows = [
        Row(
            "one-line round trip: mpmock://generic vs bare unix port on a PTY",
            f"{rt['mpmock_us']:.1f} µs",
            f"{rt['bare_us']:.1f} µs",
            rt["ratio"],
            "within 1.5x (≤ 1.50)",
            rt["ratio"] <= 1.5,
        )
    ]
    with emulator.raw_paste_uploader() as upload:
        paste = emulator.measure_raw_paste(upload)
    rows.append(
        Row(
            f"raw-paste {len(emulator.PASTE_CODE)} B at 115200 baud vs line time",
            ms(paste["elapsed_s"]),
            f"line: {ms(paste['line_s'])}",
            paste["ratio"],
            "within 10% (0.90-1.10)",
            abs(paste["ratio"] - 1) <= 0.10,
        )
    )
    for profile in emulator.PROFILES:
        start = emulator.start_median(profile)
        with emulator.reset_board(profile) as (soft_reset, work):
            _, reset = emulator.reset_medians(soft_reset, work)
        rows.append(Row(f"board start, median ({profile})", ms(start), "-", None,
                        "< 50 ms", start < 0.05))  # fmt: skip
        rows.append(Row(f"soft reset, median ({profile})", ms(reset), "-", None,
                        "< 50 ms", reset < 0.05))  # fmt: skip
    return rows


def session_rows() -> list[Row]:
    """Session create + cleanup: host cost, and its board round trips on the unix port."""
    target = session.HOST_TARGET_S
    untouched = session.median_seconds(
        session.untouched_cycle(DeviceSessionManager(session.InstantBoard()))
    )
    host = session.median_seconds(session.clean_cycle(DeviceSessionManager(session.InstantBoard())))
    with session.unix_port_manager() as manager:
        trips = session.cleanup_round_trips(manager)
        unix = session.measure_unix_port(manager)
    return [
        Row("session create+cleanup, never used (host cost, no board)", us(untouched), "-",
            None, "< 1 ms", untouched < target),
        Row("session create+exec+clean cleanup, host cost (board answers at once)", us(host),
            "-", None, "< 1 ms", host < target),
        Row("same cycle on the unix port, minus 2 bare round trips",
            us(unix["host_s"]), f"round trip: {us(unix['round_trip_s'])}", None, "< 1 ms",
            unix["host_s"] < target),
        Row("board round trips of a clean cleanup (counted)", str(trips), "-", None, "≤ 1",
            trips <= 1),
    ]  # fmt: skip


def pool_rows() -> list[Row]:
    """40 tests x 50 ms on the board: two boards with ``-n 2`` against one board."""
    with tempfile.TemporaryDirectory() as tmp, PtyBoard("generic") as a, PtyBoard("generic") as b:
        f = pool.measure_pool(Path(tmp), a.path, b.path)
    return [
        Row(
            "40 tests x 50 ms: two boards with -n 2 vs one board",
            f"{f['two_s']:.2f} s",
            f"one board: {f['one_s']:.2f} s",
            f["ratio"],
            "≤ 75% (≤ 0.75)",
            f["ratio"] <= 0.75,
        )
    ]


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| measurement | ours | peer | ratio (ours / peer) | target | met |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}{r.note}"
        met = "met" if r.met else "**not met**"
        lines.append(f"| {r.measurement} | {r.ours} | {r.peer} | {ratio} | {r.target} | {met} |")
    return "\n".join(lines)


def main() -> int:
    """Measure everything, print the table; exit status 0 (a figure is not a failure)."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[Row] = []
    sections: list[Callable[[], list[Row]]] = [exec_rows, emulator_rows, session_rows, pool_rows]
    if sys.argv[1:] == ["--exec"]:
        sections = [exec_rows]  # the exec rows alone (the checks' cost, mpremote)
    for section in sections:
        rows += section()
    load_after = os.getloadavg()
    print(table(rows))
    print()
    print(
        f"{sum(r.met for r in rows)} of {len(rows)} targets met; measured in "
        f"{time.perf_counter() - started:.1f} s, load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} CPUs."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
