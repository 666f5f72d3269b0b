"""Recovery from the faults a board farm sees, at the communicator level.

On the real MicroPython unix port (served as a board on a PTY): the process killed mid-call,
the board reset mid-call, the PTY closed and back at the same path (a USB board
re-enumerating), noise before the raw-REPL prompt and before a reply, a board nothing
brings back (broken, then revived by hand). On the emulator's boards (``mpmock://``): the
same faults from its fault options. Plus the exclusive-use lock across processes and the
safety of ``eval``: what a board prints is never evaluated on the host.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import itertools
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from board_faults import LONG_CALL, when_printed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_mpsession.boardlock import BoardBusyError, BoardLock, lock_key
from pytest_mpsession.communicator import (
    BoardBrokenError,
    BoardDisconnectedError,
    BoardFault,
    BoardHungError,
    BoardNoiseError,
    BoardResetError,
    Communicator,
    parse_literal,
)
from pytest_mpsession.emulator import PtyBoard
from pytest_mpsession.errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    MpSessionError,
    ProtocolError,
)
from pytest_mpsession.protocol.frame import PROBE, checksum

pytestmark = pytest.mark.timeout(60)


class PtyRelay:
    """A PTY of our own in front of a board (the cable and USB chip of a real board), at a
    stable symlink path like ``/dev/serial/by-id/...``.

    ``vanish()`` closes the PTY and removes the path (the board fell off the bus; the board
    itself keeps running), ``come_back()`` serves a new PTY at the same path (re-enumerated).
    ``noise_before(trigger, noise)``: the next time the host sends ``trigger``, ``noise``
    goes to the host before anything the board says.
    """

    board: PtyBoard

    def __init__(self, board_path: str, link: Path) -> None:
        self.link = link
        self._board = os.open(board_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        import tty

        tty.setraw(self._board)
        self._lock = threading.Lock()
        self._master = -1
        self._noise: list[tuple[bytes, bytes]] = []
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self.come_back()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def come_back(self) -> None:
        """Serve a new PTY at the link path."""
        master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        path = os.ttyname(slave)
        os.close(slave)  # the host opens it by path
        with self._lock:
            self._master = master
        tmp = self.link.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(path)
        tmp.replace(self.link)
        os.write(self._wake_w, b"!")

    def vanish(self) -> None:
        """Close the PTY the host has open and remove its path."""
        self.link.unlink(missing_ok=True)
        with self._lock:
            master, self._master = self._master, -1
        if master >= 0:
            os.close(master)
        os.write(self._wake_w, b"!")

    def noise_before(self, trigger: bytes, noise: bytes) -> None:
        """Next time the host sends ``trigger``, send ``noise`` to the host first."""
        with self._lock:
            self._noise.append((trigger, noise))

    def _run(self) -> None:
        while not self._stop:
            with self._lock:
                master = self._master
            fds = [self._board, self._wake_r] + ([master] if master >= 0 else [])
            ready = select.select(fds, [], [], None)[0]
            if self._wake_r in ready:
                os.read(self._wake_r, 100)
                continue
            if self._board in ready:
                try:
                    data = os.read(self._board, 65536)
                except BlockingIOError:
                    data = b""
                except OSError:
                    return
                if data and master >= 0:
                    with contextlib.suppress(OSError):
                        os.write(master, data)  # lost when nobody has the port open
            if master >= 0 and master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    # EIO: the host closed its side (between its reopen attempts)
                    select.select([self._wake_r], [], [], 0.001)
                    continue
                with self._lock:
                    hits = [(t, n) for t, n in self._noise if t in data]
                    for hit in hits:
                        self._noise.remove(hit)
                for _, noise in hits:
                    os.write(master, noise)
                os.write(self._board, data)

    def close(self) -> None:
        """Stop relaying and close everything."""
        self._stop = True
        os.write(self._wake_w, b"!")
        self._thread.join(5)
        for fd in (self._board, self._master, self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.link.unlink(missing_ok=True)


@pytest.fixture
def relay(pty_board_factory: Callable[..., PtyBoard], tmp_path: Path) -> Iterator[PtyRelay]:
    """The unix-port board behind a :class:`PtyRelay` at ``tmp_path/ttyBOARD``
    (``relay.board`` is the :class:`PtyBoard`)."""
    board = pty_board_factory("unix")
    r = PtyRelay(board.path, tmp_path / "ttyBOARD")
    r.board = board
    yield r
    r.close()


def ram_losses(board: PtyBoard) -> int:
    """How often the emulated board lost its RAM so far: resets, and the emulator's heals
    (a Ctrl-C whose SIGINT landed inside the unix port's allocator restarts it, and the
    board tells the host as a crashed board does: a soft reboot)."""
    stats = board.link.stats
    return stats["soft_resets"] + stats["hard_resets"] + stats["interrupt_heals"]


@pytest.fixture
def unix_board(pty_board_factory: Callable[..., PtyBoard]) -> PtyBoard:
    """The bare unix port on a PTY, as a :class:`PtyBoard` (for its engine and reset line)."""
    board: PtyBoard = pty_board_factory("unix")
    return board


def assert_fault(err: BaseException, cls: type, *, ram_lost: bool) -> None:
    """``err`` is a recovered fault of ``cls``, one line, naming the port."""
    assert isinstance(err, cls), repr(err)
    assert isinstance(err, BoardFault)
    assert err.recovered, str(err)
    assert err.ram_lost is ram_lost, str(err)
    assert "\n" not in str(err)
    assert "usable again" in str(err)


# -- the real unix port ---------------------------------------------------------------------


def test_process_killed_mid_call(unix_board: PtyBoard) -> None:
    resets: list[int] = []
    with Communicator.open(unix_board.path, timeout=10) as comm:
        comm.add_reset_listener(lambda: resets.append(comm.reset_count))
        comm.exec("kept = 1")
        pid = unix_board.engine_pid
        assert pid is not None
        start = time.monotonic()
        with pytest.raises(BoardResetError) as info:
            comm.exec(LONG_CALL, on_stdout=when_printed(b"go", lambda: os.kill(pid, 9)))
        # told at once by the board's reboot text, not after the 10 s timeout
        assert time.monotonic() - start < 3
        assert_fault(info.value, BoardResetError, ram_lost=True)
        assert "the board reset during the call" in str(info.value)
        assert comm.reset_count == 1 and resets == [1]
        assert comm.eval("'kept' in globals()") is False
        assert comm.eval("6*7") == 42


def test_board_reset_mid_call(unix_board: PtyBoard) -> None:
    with Communicator.open(unix_board.path, timeout=10) as comm:
        start = time.monotonic()
        with pytest.raises(BoardResetError) as info:
            comm.exec(LONG_CALL, on_stdout=when_printed(b"go", unix_board.hard_reset))
        assert time.monotonic() - start < 3
        assert_fault(info.value, BoardResetError, ram_lost=True)
        assert comm.reset_count == 1
        assert comm.exec("print('back')") == "back\n"


def test_reset_while_idle_is_taken_before_the_next_call(unix_board: PtyBoard) -> None:
    with Communicator.open(unix_board.path, timeout=10) as comm:
        comm.exec("kept = 1")
        unix_board.hard_reset()  # between calls
        fd = comm._transport._fd
        assert fd is not None and select.select([fd], [], [], 10)[0]  # its boot text is there
        # the next call sees the reboot, re-enters the raw REPL and runs: no call fails
        assert comm.eval("'kept' in globals()") is False
        assert comm.reset_count == 1


def test_reset_just_before_a_call_fails_only_that_call(unix_board: PtyBoard) -> None:
    with Communicator.open(unix_board.path, timeout=10) as comm:
        comm.exec("kept = 1")
        unix_board.hard_reset()  # the code goes out while the board boots
        try:
            assert comm.eval("'kept' in globals()") is False
        except BoardResetError as exc:
            assert_fault(exc, BoardResetError, ram_lost=True)
        assert comm.eval("1+1") == 2
        assert comm.reset_count == 1


def test_pty_closed_and_back_at_the_same_path(relay: PtyRelay) -> None:
    with Communicator.open(str(relay.link), timeout=10) as comm:
        comm.recovery_timeout = 5
        comm.exec("kept = 7")
        losses = ram_losses(relay.board)
        timer = threading.Timer(0.3, relay.come_back)  # the time a board takes to re-enumerate

        def unplug() -> None:
            relay.vanish()
            timer.start()

        start = time.monotonic()
        with pytest.raises(BoardDisconnectedError) as info:
            # the code ends while the port is away: the board is idle when it is back
            comm.exec(
                "print('go')\nimport time\ntime.sleep(0.1)", on_stdout=when_printed(b"go", unplug)
            )
        timer.join()
        assert 0.3 <= time.monotonic() - start < 5
        assert_fault(info.value, BoardDisconnectedError, ram_lost=False)
        assert info.value.recovery is not None and info.value.recovery.steps == ("reopen",)
        assert "link to the board dropped" in str(info.value)
        assert comm.eval("kept") == 7  # the board kept running: its RAM is intact
        assert comm.reset_count == 0 and ram_losses(relay.board) == losses


@pytest.mark.parametrize("seed", [1, 5])
def test_a_link_that_keeps_dropping_is_reopened_not_reset(seed: int) -> None:
    # A link that drops again while it is being reconnected (each exchange of the recovery
    # has the same 20 % chance) is reopened again with the recovery's time left: resetting
    # the board cannot cure a link, and would lose its RAM for nothing.
    url = f"mpmock://generic?seed={seed}&disconnect=0.2"
    with Communicator.open(url, timeout=10) as comm:
        for _ in range(5):  # the first install's exchanges meet the faults too
            try:
                comm.exec("kept = 5")
                break
            except BoardDisconnectedError:
                if comm.broken:
                    comm.recover()
        answered, reports = 0, []
        for i in range(40):
            try:
                assert comm.eval(f"{i} * 3") == i * 3
                answered += 1
            except BoardDisconnectedError as exc:
                assert exc.recovery is not None
                reports.append(exc.recovery)
        assert reports and answered >= 25
        assert all(r.recovered and not r.ram_lost for r in reports), reports
        assert {step for r in reports for step in r.steps} == {"reopen"}
        assert any(len(r.steps) > 1 for r in reports)  # a drop during a reconnect was met
        # the RAM survived every drop (asking may meet a drop too: then ask again)
        for _ in range(10):
            with contextlib.suppress(BoardDisconnectedError):
                assert comm.eval("kept") == 5
                break
        else:
            pytest.fail("ten drops in a row")


def test_pty_gone_for_good_breaks_the_board_then_it_comes_back(relay: PtyRelay) -> None:
    with Communicator.open(str(relay.link), timeout=10) as comm:
        comm.recovery_timeout = 0.5
        relay.vanish()
        start = time.monotonic()
        with pytest.raises(DeviceConnectionError) as info:
            comm.exec("print(1)")
        assert time.monotonic() - start < 2
        assert isinstance(info.value, BoardFault) and not info.value.recovered
        assert "recovery failed" in str(info.value) or "did not come back" in str(info.value)
        assert comm.broken
        # every later call fails at once, saying why
        start = time.monotonic()
        with pytest.raises(BoardBrokenError, match="the board is broken"):
            comm.exec("print(1)")
        assert time.monotonic() - start < 0.1
        relay.come_back()  # replugged
        report = comm.recover(timeout=5)
        assert report.recovered and report.steps[-1] == "reopen"
        assert comm.broken is None
        assert comm.eval("2+2") == 4


def test_noise_before_the_prompt(relay: PtyRelay) -> None:
    relay.noise_before(b"\x01", b"\x00\xff\xfe ets Jun  8 2016 rst:0x1 boot:0x13\r\n>>> garbage")
    with Communicator.open(str(relay.link), timeout=5) as comm:
        assert comm.eval("1+2") == 3


def test_noise_before_the_reply(relay: PtyRelay) -> None:
    # Noise where the reply ends: the framed reply either survives it (the value is right)
    # or the call says what happened; never a wrong value.
    with Communicator.open(str(relay.link), timeout=5) as comm:
        comm.exec("kept = 1")
        relay.noise_before(b"\x04", b"%$#@ line noise")
        losses = ram_losses(relay.board)
        try:
            assert comm.eval("40+2") == 42
        except (BoardNoiseError, BoardResetError) as exc:
            healed = ram_losses(relay.board) > losses
            assert_fault(exc, BoardResetError if healed else BoardNoiseError, ram_lost=healed)
            if not healed:
                assert isinstance(exc, ProtocolError)
        assert comm.eval("40+2") == 42


def test_board_that_nothing_brings_back(unix_board: PtyBoard) -> None:
    # Code that swallows every KeyboardInterrupt: neither Ctrl-C nor Ctrl-D stops it and a
    # PTY has no reset line; reopening the port does not reset a board that is not on USB.
    swallow = (
        "def spin():\n"
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except KeyboardInterrupt:\n"
        "            pass\n"
        "while True:\n"
        "    try:\n"
        "        spin()\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
    )
    with Communicator.open(unix_board.path, timeout=5) as comm:
        comm.recovery_timeout = 1.0
        start = time.monotonic()
        try:
            comm.exec(swallow, timeout=0.3)
        except DeviceTimeout as exc:
            err: DeviceTimeout = exc
        assert time.monotonic() - start < 0.3 + 1.0 + 1.0
        if not isinstance(err, BoardHungError):
            # a Ctrl-C landed between two handlers and got out: the board is fine
            assert "usable again" in str(err)
            return
        assert not err.recovered and "recovery failed" in str(err) and "\n" not in str(err)
        assert err.recovery is not None
        # a PTY has no reset line: that step is left out; a second round follows
        assert err.recovery.steps[:3] == ("interrupt", "soft reset", "reopen")
        with pytest.raises(BoardBrokenError):
            comm.eval("1")
        unix_board.hard_reset()  # someone presses the reset button
        report = comm.recover(timeout=5)
        assert report.recovered and report.ram_lost
        assert comm.reset_count == 1
        assert comm.eval("3*3") == 9


def test_recover_on_a_healthy_board_only_resyncs(unix_port: str) -> None:
    with Communicator.open(unix_port) as comm:
        comm.exec("kept = 2")
        report = comm.recover()
        assert report.recovered and report.steps == ("interrupt",) and not report.ram_lost
        assert report.elapsed < 1
        assert comm.eval("kept") == 2 and comm.reset_count == 0


def test_interrupt_of_a_broken_board_tries_a_recovery(relay: PtyRelay) -> None:
    with Communicator.open(str(relay.link), timeout=5) as comm:
        comm.recovery_timeout = 0.5
        relay.vanish()
        with pytest.raises(DeviceConnectionError):
            comm.exec("print(1)")
        assert comm.broken
        with pytest.raises(BoardBrokenError, match="did not come back"):
            comm.interrupt(timeout=0.5)  # still unplugged
        relay.come_back()
        comm.interrupt(timeout=5)  # what the session manager calls after a failed call
        assert comm.broken is None and comm.eval("5") == 5


# -- the emulator's faults --------------------------------------------------------------------


def mpmock_comm(query: str, **kw: float) -> Communicator:
    """A communicator on an ``mpmock://generic?QUERY`` board."""
    return Communicator.open(f"mpmock://generic?{query}", timeout=kw.get("timeout", 5))


def test_emulated_reset_mid_call() -> None:
    with mpmock_comm("seed=1") as comm:
        link = comm._transport._ser.link
        comm.exec("kept = 1")
        with pytest.raises(BoardResetError) as info:
            comm.exec(LONG_CALL, on_stdout=when_printed(b"go", link.hard_reset))
        assert_fault(info.value, BoardResetError, ram_lost=True)
        assert comm.eval("'kept' in globals()") is False
        assert comm.reset_count == 1


def test_emulated_disconnect_keeps_ram() -> None:
    # the link drops in the middle of the call: first count the bytes the host sends until
    # then (the checked-exchange wrapper is installed at open), then drop there
    from pytest_mpsession.transport import Transport

    total = [0]  # bytes both ways, as the emulator counts them
    original, read = Transport.write, Transport.read_some

    def count(self: Transport, data: bytes) -> None:
        total[0] += len(data)
        original(self, data)

    def count_read(self: Transport, deadline: float) -> bytes:
        data = read(self, deadline)
        total[0] += len(data)
        return data

    Transport.write, Transport.read_some = count, count_read  # type: ignore[method-assign]
    try:
        with mpmock_comm("seed=1") as probe:
            probe._numbers = itertools.count(100000)  # exchange numbers of known length
            probe.exec("kept = 5")
            before = total[0]
    finally:
        Transport.write, Transport.read_some = original, read  # type: ignore[method-assign]
    # the call's line is ~50 bytes; its reply 1,000: drop in the middle of the reply
    with mpmock_comm(f"seed=1&disconnect_after={before + 500}") as comm:
        comm._numbers = itertools.count(100000)
        comm.exec("kept = 5")
        with pytest.raises(BoardDisconnectedError) as info:
            comm.exec("print('x' * 1000)")
        assert_fault(info.value, BoardDisconnectedError, ram_lost=False)
        assert comm.eval("kept") == 5


def test_board_that_always_hangs_is_broken_quickly() -> None:
    with mpmock_comm("seed=3&hang=1", timeout=2) as comm:
        comm.recovery_timeout = 1.0
        start = time.monotonic()
        with pytest.raises(BoardHungError) as info:
            comm.eval("1", timeout=0.3)
        assert not info.value.recovered and "recovery failed" in str(info.value)
        assert time.monotonic() - start < 0.3 + 1.0 + 1.5
        assert comm.broken
        with pytest.raises(BoardBrokenError):
            comm.eval("1")


def test_board_that_always_resets_is_broken() -> None:
    with mpmock_comm("seed=3&reset=1", timeout=3) as comm:
        comm.recovery_timeout = 2.0
        with pytest.raises((DeviceConnectionError, DeviceTimeout)) as info:
            comm.eval("1", timeout=1)
        assert isinstance(info.value, BoardFault), repr(info.value)
        assert not info.value.recovered
        assert comm.broken


FAULTS = ("garbage", "fault_resets", "hangs", "disconnects")


@pytest.mark.parametrize("seed", [11, 12])
def test_short_soak_never_returns_a_wrong_value(seed: int) -> None:
    url = f"seed={seed}&garbage=0.05&disconnect=0.01&reset=0.01&hang=0.005"
    with mpmock_comm(url) as comm:
        comm.recovery_timeout = 2.0
        faults = 0
        for i in range(300):
            link = comm._transport._ser.link
            before = sum(link.stats[name] for name in FAULTS)
            try:
                assert comm.eval(f"{i}*7+3", timeout=0.5) == i * 7 + 3
            except (DeviceConnectionError, ProtocolError, DeviceTimeout) as exc:
                assert isinstance(exc, BoardFault | DeviceTimeout), repr(exc)
                assert getattr(exc, "recovered", True), str(exc)
                faults += 1
                # no error without a fault injected during this very call (or a new board
                # behind the port, after a hang): recovery leaves a clean board
                now = comm._transport._ser.link
                assert now is not link or sum(now.stats[n] for n in FAULTS) > before, str(exc)
        assert faults > 0


# -- exclusive use ----------------------------------------------------------------------------


def test_second_process_gets_board_busy(unix_port: str) -> None:
    with Communicator.open(unix_port):
        code = (
            "import sys\n"
            "from pytest_mpsession.communicator import Communicator\n"
            "try:\n"
            f"    Communicator.open({unix_port!r}, timeout=2)\n"
            "except Exception as e:\n"
            "    print(type(e).__name__, e)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    assert out.startswith(f"BoardBusyError board busy: {unix_port} is in use by pid {os.getpid()}")
    assert "\n" not in out
    with Communicator.open(unix_port) as again:  # released on close
        assert again.eval("1") == 1


def test_lock_released_when_the_holder_dies(unix_port: str, tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import sys, time\n"
        "from pytest_mpsession.boardlock import BoardLock\n"
        f"lock = BoardLock({unix_port!r})\nlock.acquire()\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "sys.stdin.read()\n"  # held until killed
    )
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE) as proc:
        try:
            deadline = time.monotonic() + 20
            while not ready.exists():  # the child's start-up: no event to wait on
                assert time.monotonic() < deadline and proc.poll() is None
                select.select([], [], [], 0.01)
            with pytest.raises(BoardBusyError) as info:
                BoardLock(unix_port).acquire()
            assert info.value.holder["pid"] == str(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            with BoardLock(unix_port) as lock:  # the kernel dropped the dead holder's flock
                assert lock.held
        finally:
            if proc.poll() is None:
                proc.kill()


def test_lock_keys_name_one_board_once(tmp_path: Path) -> None:
    target = tmp_path / "ttyACM0"
    target.touch()
    alias = tmp_path / "by-id-usb-board"
    alias.symlink_to(target)
    assert lock_key(str(alias)) == lock_key(str(target))
    assert (
        lock_key("rfc2217://localhost:2217?ign_set_control")
        == lock_key("socket://127.0.0.1:2217")
        == "net-127.0.0.1-2217.lock"
    )
    assert lock_key("socket://board-3:2217") != lock_key("socket://board-3:2218")
    assert lock_key("mpmock://generic") is None and lock_key("loop://") is None
    # a pseudo-terminal's number is reused once it closes: its key names this one only
    master, slave = os.openpty()
    try:
        path = os.ttyname(slave)
        key = lock_key(path)
        assert key is not None and key.endswith(f"-{os.stat(path).st_ctime_ns}.lock")
    finally:
        os.close(slave)
        os.close(master)


def test_unusable_lock_dir_does_not_stop_a_run(
    unix_port: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("MP_LOCK_DIR", str(blocker / "locks"))
    with Communicator.open(unix_port) as comm:  # the exclusive open still protects it
        assert comm.eval("1") == 1


# -- safety: nothing the board prints is evaluated on the host -----------------------------

MALICIOUS = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "exec(\"open('{marker}','w')\")",
    "(lambda: open('{marker}', 'w'))()",
    "[open('{marker}', 'w') for _ in [1]]",
    "{{'a': open('{marker}', 'w')}}",
    "bytearray(open('{marker}', 'w'))",
    "frozenset(open('{marker}', 'w'))",
    "1 if open('{marker}', 'w') else 2",
    "__builtins__",
    "().__class__.__base__.__subclasses__()",
    'f\'{{open("{marker}", "w")}}\'',
]


@pytest.fixture
def no_host_eval(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make eval and os.system on the host raise, recording attempts (exec stays: the
    import machinery runs modules with it)."""
    calls: list[str] = []

    def trap(name: str) -> Callable[..., object]:
        def f(*args: object, **kwargs: object) -> object:
            calls.append(name)
            raise AssertionError(f"{name} called on the host")

        return f

    monkeypatch.setattr(builtins, "eval", trap("eval"))
    monkeypatch.setattr(os, "system", trap("os.system"))
    return calls


@pytest.mark.parametrize("payload", MALICIOUS)
def test_parse_literal_never_runs_anything(
    payload: str, tmp_path: Path, no_host_eval: list[str]
) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match="not a literal"):
        parse_literal(payload.format(marker=marker))
    assert not marker.exists() and no_host_eval == []


def test_malicious_board_output_is_not_run(
    unix_port: str, tmp_path: Path, no_host_eval: list[str]
) -> None:
    # A board whose "values" are code: its output is taken as text, never run.
    marker = tmp_path / "pwned"
    with Communicator.open(unix_port) as comm:
        comm.exec("class Evil:\n def __init__(s, t):\n  s.t = t\n def __repr__(s):\n  return s.t")
        for payload in MALICIOUS:
            text = payload.format(marker=marker)
            assert comm.exec(f"print(repr(Evil({text!r})))") == text + "\n"  # it lies
            with pytest.raises(ProtocolError, match="is not a literal"):
                comm.eval(f"Evil({text!r})")
        assert comm.eval("1+1") == 2
    assert not marker.exists()
    assert no_host_eval == []


# -- fuzzing: any bytes where a reply should be ------------------------------------------------


class ScriptedBoard:
    """A raw-REPL board played by a thread on a PTY: it answers the enter, resync, the
    checked-exchange wrapper's install, the RAM marker and ``print(N)`` code correctly,
    except that the first reply to the code ``print('fuzz')`` is ``reply`` (any bytes)."""

    BANNER = b"raw REPL; CTRL-B to exit\r\n>"

    def __init__(self, reply: bytes) -> None:
        self.master, slave = os.openpty()
        import tty

        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)
        self.reply: bytes | None = reply
        self.armed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _answer(self, code: bytes) -> bytes:
        text = code.decode(errors="replace")
        if text.startswith("print('mpsync:'+'"):
            n = text.split("'+'")[1].split("'")[0]
            return b"OKmpsync:" + n.encode() + b"\x04\x04>"
        if text.startswith("try:\n from binascii"):  # the checksum (protocol/frame.py)
            return b"OK\x1ec%d 100000\r\n\x04\x04>" % checksum(*PROBE, "c")
        if text.startswith("(lambda y:_mpsh"):  # wrapper pieces, checked on arrival
            self.armed = self.armed or "__mpsession_up=1" in text
            return b"OK\x1e+\r\n\x04\x04>"
        if text.startswith("(lambda n:print(n,n in globals()))"):
            return b"OK__mpsession_up " + str(self.armed).encode() + b"\r\n\x04\x04>"
        if text.startswith("(lambda n:print('\\x1e?"):
            return b"OK\x1e?0:0\r\n\x04\x04>"
        if text.startswith("_mpsx(") and self.armed:
            call = text
            n, _check, inner, *_key_op = ast.literal_eval(call[5:])
            tok = b"\x1e%d" % n
            if inner == "print('fuzz')" and self.reply is not None:
                reply, self.reply = self.reply, None
                return reply
            if inner == "_mps_r(7)\n1/0":  # the wrapper's proof
                record = b"\x1e7\x1f%d\n" % checksum(b"7", 0, "c")
                return (
                    b"OK"
                    + tok
                    + b"("
                    + record
                    + tok
                    + b"eZeroDivisionError: divide by zero\n"
                    + tok
                    + b")e1\x04\x04>"
                )
            if inner.startswith("print(") and inner.endswith(")"):
                out = inner[6:-1].encode() + b"\r\n"
                return b"OK" + tok + b"(" + out + tok + b").0\x04\x04>"
        return b"OK\x04NameError\r\n\x04>"

    def _run(self) -> None:
        line = bytearray()
        while not self._stop.is_set():
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                continue  # the host closed its side (a reopen)
            out = bytearray()
            if b"\x05A\x01" in data:  # a raw-paste request: this board has none
                data = data.replace(b"\x05A\x01", b"")
                out += b"R\x00"
            for byte in data:
                if byte == 0x01:
                    line.clear()
                    out += b"\r\n" + self.BANNER
                elif byte == 0x03:
                    line.clear()
                elif byte == 0x04:
                    if line:
                        out += self._answer(bytes(line))
                    else:
                        self.armed = False
                        out += b"OK\r\nMPY: soft reboot\r\n" + self.BANNER
                    line.clear()
                elif byte != 0x0D or line:
                    line.append(byte)
            with contextlib.suppress(OSError):
                os.write(self.master, bytes(out))

    def close(self) -> None:
        """Stop the thread, close the PTY."""
        self._stop.set()
        self._thread.join(5)
        os.close(self.master)


_reply_bytes = st.one_of(
    st.binary(max_size=80),
    st.lists(
        st.sampled_from(
            [b"OK", b"\x04", b">", b"\x04>", b"raw REPL; CTRL-B to exit\r\n>", b">>> ",
             b"MicroPython v1.22.0 on 2024-01-01; ESP32\r\n", b"MPY: soft reboot\r\n",
             b"Traceback (most recent call last):\r\n", b"\x1e", b"1", b"\xff", b"\r\n"]
        ),
        max_size=8,
    ).map(b"".join),
)  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reply=_reply_bytes)
@pytest.mark.timeout(300)
def test_any_reply_gives_a_value_or_a_typed_error_and_the_board_comes_back(reply: bytes) -> None:
    board = ScriptedBoard(reply)
    try:
        with Communicator.open(board.path, timeout=2) as comm:
            comm.recovery_timeout = 1.5
            start = time.monotonic()
            try:
                comm.exec("print('fuzz')", timeout=0.4)
            except MpSessionError as exc:
                assert "\n" not in str(exc).strip() or isinstance(exc, DeviceError)
                assert getattr(exc, "recovered", True), str(exc)
            assert time.monotonic() - start < 0.4 + 1.5 + 1.0
            # the board works again: at once, or after one call that meets the rest of the
            # fuzzed reply
            results = []
            for n in (1, 2):
                try:
                    results.append(comm.exec(f"print({n})", timeout=1))
                except MpSessionError as exc:
                    assert getattr(exc, "recovered", True), str(exc)
            assert results and results[-1] in ("1\r\n", "2\r\n"), results  # as sent
            assert comm.broken is None
    finally:
        board.close()
