"""The largest program a small board runs: ``session.exec`` against ``mpremote run`` (its
``SerialTransport.exec`` after a soft reset, what ``mpremote run`` does), side by side, on the
micro:bit's real MicroPython 1.9.2 firmware in QEMU (``microbit``) and on the emulator's
``legacy`` board.

A program of N lines ``vI = I  # ...`` (about 50 bytes a line) that prints its last value;
the largest N each client runs is found by bisection, each try on a freshly reset board.
Run standalone for the figures::

    python tests/benchmarks/test_bench_small_board.py            # both boards
    python tests/benchmarks/test_bench_small_board.py microbit

Nothing here asserts a size: the figures go to pytest-benchmark's ``extra_info``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from pytest_mpsession import DeviceSessionManager
from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.errors import MpSessionError

pytestmark = pytest.mark.timeout(600)

LINE = "v{i} = {i}  # " + "x" * 36 + "\n"


def program(lines: int) -> tuple[str, str]:
    """A program of ``lines`` assignments and the output that proves it all ran."""
    code = "".join(LINE.format(i=i) for i in range(lines)) + f"print(v{lines - 1})\n"
    return code, str(lines - 1)


def runs_in_session(port: str, lines: int) -> bool:
    """Whether a fresh session on a freshly reset board runs the program."""
    code, expected = program(lines)
    manager = DeviceSessionManager.connect(port, timeout=20)
    try:
        manager.reset_board("soft")
        with manager.create_session() as session:
            return session.exec(code, timeout=20).strip() == expected
    except MpSessionError:
        return False
    finally:
        manager.close()


def runs_with_mpremote(port: str, lines: int) -> bool:
    """Whether ``mpremote run`` (a soft reset, then the program) runs it."""
    from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

    code, expected = program(lines)
    transport = SerialTransport(port)
    try:
        transport.enter_raw_repl(soft_reset=True)
        out = transport.exec(code)
        return bool(out.decode(errors="replace").strip() == expected)
    except Exception:  # mpremote raises TransportError, its own exec errors
        return False
    finally:
        transport.close()


def largest(runs: Callable[[int], bool], low: int = 5, high: int = 400) -> int:
    """The largest line count in [low, high] that ``runs`` (0 when even ``low`` fails)."""
    if not runs(low):
        return 0
    while low < high:
        mid = (low + high + 1) // 2
        if runs(mid):
            low = mid
        else:
            high = mid - 1
    return low


def measure(profile: str) -> dict[str, int]:
    """Largest program (lines and bytes) through each client on ``profile``."""
    figures: dict[str, int] = {}
    with PtyBoard(profile) as board:
        for name, runs in (("session.exec", runs_in_session), ("mpremote run", runs_with_mpremote)):
            n = largest(lambda lines, runs=runs: runs(board.path, lines))  # type: ignore[misc]
            figures[f"{name} lines"] = n
            figures[f"{name} bytes"] = len(program(n)[0]) if n else 0
    return figures


# In the suite only on ``legacy``: the micro:bit's figure in the suite is
# tests/benchmarks/test_bench_qemu.py's (the same comparison; this file's bisection on the
# real firmware takes minutes, so run it standalone, as the module docstring says).
@pytest.mark.parametrize("profile", ["legacy"])
def test_largest_program_session_vs_mpremote(benchmark: object, profile: str) -> None:
    figures = measure(profile)
    benchmark.extra_info.update(figures)  # type: ignore[attr-defined]
    benchmark.pedantic(lambda: None, rounds=1)  # type: ignore[attr-defined]
    assert figures["mpremote run lines"] > 0


def main(argv: list[str]) -> int:
    """Print the figures of the profiles named (default: microbit and legacy)."""
    for profile in argv or ["microbit", "legacy"]:
        figures = measure(profile)
        sys.stdout.write(f"{profile}: {figures}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
