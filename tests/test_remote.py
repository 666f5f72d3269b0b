"""Remote boards through existing software: ser2net exporting a board's serial port over
RFC 2217, and the emulator's own TCP server over ``socket://``.

ser2net (Debian's package) runs on loopback and exports the real MicroPython unix port
served on a PTY. A PTY has no modem lines, so the client URL carries pyserial's
``ign_set_control`` option: ``rfc2217://127.0.0.1:PORT?ign_set_control``. ser2net accepts
one client per port (``max-connections``, default 1): a second run, from any host, is
refused. Without ser2net these tests skip, saying how to install it; in CI (``CI=true``)
they fail instead, since CI installs it.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.boardlock import BoardBusyError
from pytest_mpsession.communicator import BoardDisconnectedError, Communicator
from pytest_mpsession.errors import DeviceConnectionError, DeviceError, DeviceTimeout

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (yet)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_accepting(port: int, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Block until ``port`` accepts a connection; between attempts, wait on the server's
    output (so its start-up error ends the wait at once) rather than sleeping."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"the server exited ({proc.returncode}): {out}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"nothing accepts connections on 127.0.0.1:{port}")
        assert proc.stdout is not None
        select.select([proc.stdout], [], [], min(0.02, remaining))


class Ser2Net:
    """``ser2net -n -d`` exporting ``device`` on ``127.0.0.1:port`` (RFC 2217 telnet)."""

    def __init__(self, exe: str, device: str, port: int | None = None) -> None:
        self.exe = exe
        self.device = device
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """The client URL of the exported board."""
        return f"rfc2217://127.0.0.1:{self.port}?ign_set_control"

    def start(self) -> None:
        """Start (again) on the same port."""
        yaml = (
            "%YAML 1.1\n---\n"
            "connection: &board\n"
            f"  accepter: telnet(rfc2217),tcp,127.0.0.1,{self.port}\n"
            f"  connector: serialdev,{self.device},115200n81,local\n"
        )
        self.proc = subprocess.Popen(
            [self.exe, "-n", "-d", "-Y", yaml], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        wait_until_accepting(self.port, self.proc)

    def stop(self) -> None:
        """Kill ser2net (every client's connection drops)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def ser2net_exe() -> str:
    """The ser2net executable: skip without it, fail in CI (which installs it)."""
    exe = shutil.which("ser2net") or (
        "/usr/sbin/ser2net" if os.path.exists("/usr/sbin/ser2net") else None
    )
    if exe is None:
        message = "ser2net is not installed (Debian/Ubuntu: sudo apt-get install ser2net)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI must install it (see .ci/run)")
        pytest.skip(message)
    return exe


@pytest.fixture
def exported(ser2net_exe: str, unix_port: str) -> Iterator[Ser2Net]:
    """The unix-port board exported by ser2net on loopback."""
    server = Ser2Net(ser2net_exe, unix_port)
    yield server
    server.stop()


# -- RFC 2217 through ser2net ------------------------------------------------------------


def test_communicator_over_rfc2217(exported: Ser2Net) -> None:
    with Communicator.open(exported.url, timeout=10) as comm:
        assert comm.eval("6*7") == 42
        assert comm.exec("print('hi')") == "hi\n"
        comm.exec("kept = 1")
        with pytest.raises(DeviceError) as info:
            comm.exec("1//0")
        assert info.value.exc_type == "ZeroDivisionError"
        # a long program: raw-paste flow control over the network
        program = "t = 0\n" + ("t += 1  # " + "-" * 60 + "\n") * 300 + "print(t)"
        assert comm.exec(program) == "300\n"
        assert comm.raw_paste is True
        with pytest.raises(DeviceTimeout, match="usable again"):
            comm.exec("while True:\n    pass", timeout=0.5)
        assert comm.eval("kept") == 1
        comm.soft_reset()
        assert comm.eval("'kept' in globals()") is False
        assert comm.reset_count == 1


def test_examples_pass_over_rfc2217(exported: Ser2Net, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"--mp-port={exported.url}", "examples", "-q", "-rs",
         "-o", f"cache_dir={tmp_path / 'cache'}", "--benchmark-disable", "-p", "no:randomly"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    summary = proc.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "error" not in summary, out
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 45, out
    assert "(micropython 1.29" in out  # the skip reasons name the board behind ser2net


def test_second_client_from_this_host_is_busy(exported: Ser2Net) -> None:
    with Communicator.open(exported.url, timeout=10), pytest.raises(BoardBusyError) as info:
        Communicator.open(f"socket://localhost:{exported.port}", timeout=2)
    assert str(info.value).startswith(f"board busy: socket://localhost:{exported.port} is in use")


def test_second_client_from_another_host_is_refused_by_ser2net(
    exported: Ser2Net, tmp_path: Path
) -> None:
    # Another host has its own lock directory: there ser2net's max-connections says no.
    code = (
        "from pytest_mpsession.communicator import Communicator\n"
        "try:\n"
        f"    Communicator.open({exported.url!r}, timeout=3)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    env = dict(os.environ, MP_LOCK_DIR=str(tmp_path / "other-host-locks"))
    with Communicator.open(exported.url, timeout=10) as comm:
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        ).stdout.strip()
        assert out.startswith("DeviceConnectionError "), out
        assert "one client at a time" in out and "\n" not in out
        assert comm.eval("1+1") == 2  # the first client is unharmed


def test_ser2net_restart_is_a_dropped_link(exported: Ser2Net) -> None:
    with Communicator.open(exported.url, timeout=10) as comm:
        comm.recovery_timeout = 8
        comm.exec("kept = 3")
        exported.stop()
        restart = threading.Timer(0.3, exported.start)  # the farm host restarts ser2net
        restart.start()
        try:
            # The drop is seen before the code goes out (then the call just runs, after the
            # reconnection) or after (then the call says the link dropped).
            try:
                assert comm.eval("kept") == 3
            except BoardDisconnectedError as exc:
                assert exc.recovered, str(exc)
        finally:
            restart.join()
        assert comm.last_recovery is not None and "reopen" in comm.last_recovery.steps
        assert comm.eval("kept") == 3  # the board itself never went away
        assert comm.reset_count == 0


def test_mpremote_through_ser2net(exported: Ser2Net) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", exported.url, "exec", "print('hi', 6*7)"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["hi", "42"]


# -- socket:// against the emulator's TCP server -------------------------------------------


@pytest.fixture
def tcp_board() -> Iterator[str]:
    """``python -m pytest_mpsession.emulator --tcp 127.0.0.1:PORT``: its socket:// URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_mpsession.emulator", "--tcp", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_accepting(port, proc, timeout=30)
        yield f"socket://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_socket_url_against_the_emulator_tcp_server(tcp_board: str) -> None:
    with Communicator.open(tcp_board, timeout=10) as comm:
        assert comm.eval("[1, 2.5, 'x', b'y']") == [1, 2.5, "x", b"y"]
        comm.exec("kept = 9")
        with pytest.raises(DeviceTimeout, match="usable again"):
            comm.exec("while True:\n    pass", timeout=0.5)
        assert comm.eval("kept") == 9
        with pytest.raises(BoardBusyError):
            Communicator.open(tcp_board.replace("127.0.0.1", "localhost"), timeout=2)


def test_nothing_listening_is_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(DeviceConnectionError) as info:
        Communicator.open(f"socket://127.0.0.1:{port}", timeout=2)
    assert "connection refused" in str(info.value) and "\n" not in str(info.value)
