"""Board faults end to end, through the session manager and the pytest plugin.

A fault the communicator recovered from fails only the call (and the test) it struck, with a
message that says what happened to the board; the manager passes through RECOVERING and the
next test runs on a clean board. A board that nothing brings back is marked broken: the
remaining device tests skip at once with the reason, instead of each waiting out a timeout.
Proven on the emulator's faults (put on one exact exchange with ``Link.fault_next``, as its
URL's ``reset=``, ``hang=``, ``disconnect=`` do at random) and on the real MicroPython unix
port (its process killed mid-call; its port gone for good).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from board_faults import LONG_CALL, when_printed

from pytest_mpsession import (
    BoardBrokenError,
    BoardFault,
    BoardHungError,
    BoardResetError,
    DeviceError,
    DeviceSessionManager,
    MpSessionError,
    SessionState,
)
from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(120)

_S = SessionState


def kill_engine(board: PtyBoard) -> None:
    """Crash the board's MicroPython process (the emulator boots a new one: a reset)."""
    pid = board.engine_pid
    assert pid is not None
    os.kill(pid, 9)


@pytest.fixture
def linked_board(tmp_path: Path) -> Iterator[tuple[PtyBoard, Path]]:
    """The bare unix port on a PTY, reached through a symlink of our own (like
    ``/dev/serial/by-id/...``). Removing the link and closing the board is a port that
    vanished for good; the PTY's number, which the kernel reuses at once for the next PTY
    opened, is never what the host opens again."""
    board = PtyBoard("unix")
    link = tmp_path / "ttyBOARD"
    link.symlink_to(board.path)
    try:
        yield board, link
    finally:
        board.close()


def vanish(board: PtyBoard, link: Path) -> None:
    """The board's port disappears and never comes back."""
    link.unlink(missing_ok=True)
    board.close()


# -- the manager -------------------------------------------------------------------------------


def record_states(manager: DeviceSessionManager) -> list[SessionState]:
    """The states ``manager`` moves to from now on, as its listeners see them."""
    seen: list[SessionState] = []
    manager.add_listener("state_changed", lambda old, new: seen.append(new))
    return seen


def test_reset_mid_call_passes_through_recovering_and_the_namespace_is_fresh(
    pty_board_factory: Callable[..., PtyBoard],
) -> None:
    board = pty_board_factory("unix")
    with DeviceSessionManager.connect(board.path, timeout=10) as manager:
        session = manager.create_session()
        session.exec("x = 1")
        seen = record_states(manager)
        start = time.monotonic()
        with pytest.raises(BoardResetError) as info, manager.board() as comm:
            comm.exec(LONG_CALL, on_stdout=when_printed(b"go", lambda: kill_engine(board)))
        assert time.monotonic() - start < 5  # told by the reboot, not by the 10 s timeout
        err = info.value
        assert err.recovered and err.ram_lost
        assert "the board reset during the call" in str(err) and "RAM is gone" in str(err)
        # the communicator recovered it: the manager does nothing more than say so
        assert seen == [_S.BUSY, _S.RECOVERING, _S.CONNECTED]
        assert manager.state is _S.CONNECTED and manager.broken is None
        assert manager.reset_count == 1
        # the session goes on with a fresh, empty namespace (helpers sent again)
        with pytest.raises(DeviceError, match="NameError"):
            session.exec("print(x)")
        assert session.eval("6 * 7") == 42
        session.cleanup()


def test_a_recovered_hang_is_not_recovered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # one exchange hangs (the board then answers nothing until its port is reopened or its
    # reset line pulsed)
    with DeviceSessionManager.connect("mpmock://generic", timeout=1) as manager:
        comm = manager.communicator
        recoveries: list[float | None] = []
        real = comm.recover  # type: ignore[attr-defined]

        def counting(timeout: float | None = None) -> object:
            recoveries.append(timeout)
            return real(timeout)

        monkeypatch.setattr(comm, "recover", counting)
        seen = record_states(manager)
        session = manager.create_session()
        for i in range(3):
            assert session.eval(f"{i} + 1") == i + 1
        comm._transport._ser.link.fault_next("hang")  # type: ignore[attr-defined]
        with pytest.raises(BoardHungError) as info:
            session.eval("3 + 1")
        hung = info.value
        assert hung.recovered and "not even to Ctrl-C" in str(hung)
        assert seen[-3:] == [_S.BUSY, _S.RECOVERING, _S.CONNECTED]
        assert recoveries == []  # recovered once, by the communicator, not twice
        assert session.eval("2 + 2") == 4  # the next call works


def test_a_port_gone_for_good_is_broken_at_once(
    linked_board: tuple[PtyBoard, Path],
) -> None:
    board, link = linked_board
    with DeviceSessionManager.connect(str(link), timeout=10) as manager:
        manager.communicator.recovery_timeout = 0.5  # type: ignore[attr-defined]
        session = manager.create_session()
        session.exec("x = 1")
        seen = record_states(manager)
        vanish(board, link)
        with pytest.raises(MpSessionError) as info:
            session.exec("x = 2")
        assert isinstance(info.value, BoardFault) and not info.value.recovered
        assert seen == [_S.BUSY, _S.RECOVERING, _S.ERROR]
        assert manager.last_error is info.value
        reason = manager.broken
        assert reason
        # every later use fails at once, saying why (no timeout to wait out)
        start = time.monotonic()
        with pytest.raises(BoardBrokenError, match="is broken") as broken:
            manager.create_session()
        with pytest.raises(BoardBrokenError, match="is broken"):
            session.exec("x = 3")
        assert time.monotonic() - start < 0.5
        assert reason in str(broken.value)
        # one more recovery, which fails: still ERROR, and the error says so
        seen.clear()
        with pytest.raises(BoardBrokenError, match="did not come back"):
            manager.recover(timeout=0.5)
        assert seen == [_S.RECOVERING, _S.ERROR]
        session.cleanup(policy="none")


# -- the plugin --------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MP_PORT", "MP_MOCK", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")


# Every state the manager moves to, one a line, for the outer test to read.
STATES_CONFTEST = """
import os

def pytest_mpsession_state_changed(manager, old, new):
    with open(os.path.join(os.path.dirname(__file__), "states.txt"), "a") as f:
        f.write(new.value + "\\n")
"""

# A fixture that puts one fault of the emulator's (as its URL options reset=, hang=,
# disconnect= do at random) on the board's next exchange: the fault lands exactly where the
# test wants it, whatever the number of exchanges the session layer makes before it.
FAULT_CONFTEST = (
    STATES_CONFTEST
    + """
import pytest


@pytest.fixture
def fault_next(device_session_manager):
    return device_session_manager.communicator._transport._ser.link.fault_next
"""
)

FAULTED = """
import pytest


@pytest.mark.parametrize("i", range(10))
def test_device(device_session, fault_next, i):
    device_session.exec("x = %d" % i)
    if i == {failing}:
        fault_next({kind!r})
    assert device_session.eval("x * 2") == 2 * i


def test_host_only():
    assert 1 + 1 == 2
"""


@pytest.mark.parametrize(
    ("kind", "failing", "message"),
    [
        ("reset", 2, "the board reset during the call"),
        ("hang", 0, "not even to Ctrl-C"),
        ("disconnect", 4, "the link to the board dropped during the call"),
    ],
)
def test_a_fault_fails_only_its_test(
    pytester: pytest.Pytester, kind: str, failing: int, message: str
) -> None:
    pytester.makeconftest(FAULT_CONFTEST)
    pytester.makepyfile(test_faulted=FAULTED.format(failing=failing, kind=kind))
    result = pytester.runpytest("--mp-port=mpmock://generic", "--mp-timeout=2", "-v")
    result.assert_outcomes(passed=10, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"*::test_device[[]{failing}[]] FAILED*",
            f"*::test_device[[]{failing + 1}[]] PASSED*",
            f"E * {message}*; the board was * and is usable again*",
        ]
    )
    assert "skipped" not in result.stdout.str()
    states = (pytester.path / "states.txt").read_text().split()
    at = states.index("recovering")
    assert states[at + 1] == "connected"


def test_a_killed_unix_port_fails_only_its_test(
    pytester: pytest.Pytester, pty_board_factory: Callable[..., PtyBoard]
) -> None:
    board = pty_board_factory("unix")

    class Crash:
        @pytest.fixture
        def crash_board(self) -> Callable[[], None]:
            return lambda: kill_engine(board)

    pytester.makeconftest(STATES_CONFTEST)
    pytester.makepyfile(
        test_crash=f"""
        def test_before(device_session):
            device_session.exec("x = 1")

        def test_crash(device_session, device_session_manager, crash_board):
            device_session.exec("x = 1")
            with device_session_manager.board() as comm:
                comm.exec({LONG_CALL!r}, on_stdout=lambda data: b"go" in data and crash_board())

        def test_after(device_session):
            assert device_session.eval("'x' in globals()") is False
            assert device_session.eval("6 * 7") == 42
        """
    )
    result = pytester.runpytest(f"--mp-port={board.path}", "-v", plugins=[Crash()])
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_crash FAILED*",
            "*::test_after PASSED*",
            "E *BoardResetError: * the board reset during the call *(its RAM is gone)",
        ]
    )
    states = (pytester.path / "states.txt").read_text().split()
    assert "recovering" in states and "error" not in states


BROKEN = """
import pytest


def test_first(device_session):
    assert device_session.eval("1 + 1") == 2


def test_board_dies(device_session, pull_the_plug):
    device_session.exec("x = 1")
    pull_the_plug()
    device_session.exec("x = 2")


@pytest.mark.parametrize("i", range(48))
def test_after(device_session, i):
    assert device_session.eval("x") == 1


def test_host_only():
    assert 1 + 1 == 2
"""


def test_a_dead_board_skips_the_rest_quickly(
    pytester: pytest.Pytester, linked_board: tuple[PtyBoard, Path]
) -> None:
    board, link = linked_board

    class Plug:
        @pytest.fixture
        def pull_the_plug(self) -> Callable[[], None]:
            return lambda: vanish(board, link)

    pytester.makeconftest(STATES_CONFTEST)
    pytester.makepyfile(test_broken=BROKEN)
    start = time.monotonic()
    result = pytester.runpytest(
        f"--mp-port={link}", "--mp-timeout=10", "-v", "-rs", plugins=[Plug()]
    )
    elapsed = time.monotonic() - start
    # 48 tests with a 10 s timeout each would take 8 minutes; two recoveries take seconds
    assert elapsed < 30, f"took {elapsed:.1f} s"
    result.assert_outcomes(passed=2, failed=1, skipped=48)
    broken = f"board at {link} is broken after test_broken.py::test_board_dies: "
    result.stdout.fnmatch_lines(
        [
            "*::test_first PASSED*",
            "*::test_board_dies FAILED*",
            "*::test_after[[]0[]] SKIPPED*",
            "*::test_host_only PASSED*",
            "E *BoardDisconnectedError: * the link to the board dropped during the call *"
            "did not come back*",
            f"mpsession: 48 device tests skipped: {broken}*",
            f"SKIPPED [[]48[]] *{broken}*",
        ]
    )
    states = (pytester.path / "states.txt").read_text().split()
    # the fault (recovered by nobody), the one recovery before the next device test, the end
    assert states[-6:] == ["recovering", "error", "recovering", "error", "disconnected", "closed"]


REPLUGGED = """
def test_board_dies(device_session, unplug_until_teardown):
    device_session.exec("x = 1")
    unplug_until_teardown()
    device_session.exec("x = 2")


def test_next(device_session):
    assert device_session.eval("'x' in globals()") is False
    assert device_session.eval("6 * 7") == 42
"""


def test_a_board_back_before_the_next_test_is_recovered_once(
    pytester: pytest.Pytester, linked_board: tuple[PtyBoard, Path]
) -> None:
    board, link = linked_board
    spare: list[PtyBoard] = []

    class Replug:
        @pytest.fixture
        def unplug_until_teardown(self) -> Iterator[Callable[[], None]]:
            yield lambda: vanish(board, link)
            # after the failed test: another board at the same path (a replugged board)
            spare.append(PtyBoard("unix"))
            link.symlink_to(spare[0].path)

    pytester.makeconftest(STATES_CONFTEST)
    pytester.makepyfile(test_replug=REPLUGGED)
    try:
        result = pytester.runpytest(f"--mp-port={link}", "-v", plugins=[Replug()])
    finally:
        for b in spare:
            b.close()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*::test_board_dies FAILED*", "*::test_next PASSED*"])
    assert "skipped" not in result.stdout.str()
    states = (pytester.path / "states.txt").read_text().split()
    at = len(states) - 1 - states[::-1].index("error")
    assert states.count("error") == 1 and states[at + 1 : at + 3] == ["recovering", "connected"]


XDIST_BROKEN = """
import os
import signal

import pytest


def test_board_dies(device_session):
    device_session.exec("x = 1")
    os.kill(int(os.environ["MPS_TEST_BOARD_PID"]), signal.SIGTERM)  # the board's process
    device_session.exec("x = 2")


@pytest.mark.parametrize("i", range(20))
def test_after(device_session, i):
    assert device_session.eval("x") == 1


def test_host_only():
    assert 1 + 1 == 2
"""


def test_a_dead_board_under_xdist_is_reported_by_the_controller(
    pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    link = tmp_path / "ttyXDIST"
    # the board in a process of its own, which the worker's test ends (a board unplugged)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest_mpsession.emulator",
            "--pty",
            str(link),
            "--profile",
            "unix",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert "board on" in proc.stderr.readline()  # served once it says so
        monkeypatch.setenv("MPS_TEST_BOARD_PID", str(proc.pid))
        pytester.makepyfile(test_xbroken=XDIST_BROKEN)
        start = time.monotonic()
        result = pytester.runpytest_subprocess(
            f"--mp-port={link}", "--mp-timeout=10", "-n", "1", "-p", "no:cacheprovider"
        )
        assert time.monotonic() - start < 40
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
    result.assert_outcomes(passed=1, failed=1, skipped=20)
    result.stdout.fnmatch_lines(
        [f"mpsession: gw0: 20 device tests skipped: board at {link} is broken after *"]
    )
