"""The pyserial link: pyserial's ``loop://`` and real pseudo-terminal pairs, no board."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial  # type: ignore[import-untyped]

from pytest_mpsession.boardlock import BoardBusyError
from pytest_mpsession.errors import DeviceConnectionError
from pytest_mpsession.transport import Transport

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pty_pair() -> Iterator[tuple[int, str]]:
    """(the master fd, the slave's path): the master plays the board."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    try:
        os.close(master)
    except OSError:
        pass


def test_loop_url_round_trip() -> None:
    with Transport.open("loop://") as t:
        t.write(b"hello")
        got = b""
        deadline = time.monotonic() + 2
        while len(got) < 5:
            got += t.read_some(deadline)
        assert got == b"hello"
        assert t.pulse_reset() is True  # loop:// accepts the line changes


def test_loop_read_returns_empty_at_the_deadline() -> None:
    with Transport.open("loop://") as t:
        start = time.monotonic()
        assert t.read_some(start + 0.2) == b""
        assert 0.15 < time.monotonic() - start < 1.0


def test_pty_reads_block_until_data_without_polling(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with Transport.open(path) as t:
        timer = threading.Timer(0.1, os.write, (master, b"late"))
        timer.start()
        start = time.monotonic()
        got = t.read_some(start + 5)
        elapsed = time.monotonic() - start
        timer.join()
        assert got == b"late"
        assert 0.05 < elapsed < 1.0
        assert t.read_some(time.monotonic() + 0.05) == b""
        assert t.read_available() == b""


def test_pty_write_reaches_the_other_end(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with Transport.open(path) as t:
        payload = bytes(range(256)) * 4
        t.write(payload)
        got = b""
        while len(got) < len(payload):
            got += os.read(master, 4096)
        assert got == payload  # raw mode: no translation of any byte


def test_pty_has_no_reset_line(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    with Transport.open(path) as t:
        assert t.pulse_reset() is False


def test_discard_input(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with Transport.open(path) as t:
        os.write(master, b"stale")
        time.sleep(0.05)  # test stimulus: let the bytes cross the pty before discarding
        t.discard_input()
        assert t.read_some(time.monotonic() + 0.1) == b""


def test_nonexistent_port_is_one_clear_line() -> None:
    with pytest.raises(DeviceConnectionError) as info:
        Transport.open("/dev/ttyDOESNOTEXIST9")
    msg = str(info.value)
    assert msg.startswith("cannot open /dev/ttyDOESNOTEXIST9: no such port")
    assert "\n" not in msg
    assert info.value.port == "/dev/ttyDOESNOTEXIST9"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_busy_port_is_one_clear_line(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    with Transport.open(path), pytest.raises(BoardBusyError) as info:
        Transport.open(path)
    msg = str(info.value)
    assert msg.startswith(f"board busy: {path} is in use by pid {os.getpid()} (")
    assert "\n" not in msg
    assert isinstance(info.value, DeviceConnectionError) and info.value.port == path


def test_port_held_by_another_program_is_busy(pty_pair: tuple[int, str]) -> None:
    # A terminal program (no lock file, only the exclusive open) holds the port.
    _, path = pty_pair
    other = serial.Serial(path, exclusive=True)
    try:
        with pytest.raises(DeviceConnectionError) as info:
            Transport.open(path)
        msg = str(info.value)
        assert msg.startswith(f"cannot open {path}: the port is busy")
        assert "\n" not in msg
    finally:
        other.close()
    with Transport.open(path):  # the lock was released when the open failed
        pass


def test_non_exclusive_open_shares(pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    with Transport.open(path, exclusive=False), Transport.open(path, exclusive=False):
        pass


@pytest.mark.parametrize("port", ["foo://bar", "", "socket://"])
def test_bad_urls_are_one_clear_line(port: str) -> None:
    with pytest.raises(DeviceConnectionError) as info:
        Transport.open(port)
    assert "\n" not in str(info.value)
    assert port in str(info.value)


def test_read_after_the_other_end_vanished(pty_pair: tuple[int, str]) -> None:
    master, path = pty_pair
    with Transport.open(path) as t:
        os.close(master)
        with pytest.raises(DeviceConnectionError, match=f"^{path}: .*disconnected"):
            t.read_some(time.monotonic() + 1)


def test_reopen_waits_for_the_port_to_come_back(pty_pair: tuple[int, str], tmp_path: Path) -> None:
    _, path = pty_pair
    link = tmp_path / "ttyBOARD"
    link.symlink_to(path)
    with Transport.open(str(link)) as t:
        link.unlink()  # the board re-enumerates: its device node is gone for a while
        timer = threading.Timer(0.3, link.symlink_to, (path,))
        timer.start()
        start = time.monotonic()
        t.reopen(timeout=5)
        timer.join()
        assert 0.25 < time.monotonic() - start < 3
        assert t.is_open


def test_reopen_gives_up_after_its_timeout(tmp_path: Path, pty_pair: tuple[int, str]) -> None:
    _, path = pty_pair
    link = tmp_path / "ttyBOARD"
    link.symlink_to(path)
    t = Transport.open(str(link))
    link.unlink()
    start = time.monotonic()
    with pytest.raises(DeviceConnectionError, match=r"no such port.*after 0\.3 s of retries"):
        t.reopen(timeout=0.3)
    assert time.monotonic() - start < 1.5
    t.close()


def test_closed_transport_errors_name_the_port() -> None:
    t = Transport.open("loop://")
    t.close()
    with pytest.raises(DeviceConnectionError, match=r"^loop://: write failed"):
        t.write(b"x")


def test_a_socket_the_peer_reset_is_closed_not_left_to_the_collector() -> None:
    # pyserial's socket:// and rfc2217:// clients shut their socket down and close it in one
    # try: after the peer reset the connection (a ser2net restarted) the shutdown fails and
    # the socket stayed open until collected, a ResourceWarning (an error under -W error).
    import gc
    import socket
    import struct
    import warnings

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    with server:
        t = Transport.open(f"socket://127.0.0.1:{port}", timeout=5)
        peer, _ = server.accept()
        # close with SO_LINGER 0: the connection is reset, not ended
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()
        with pytest.raises(DeviceConnectionError):
            # the reset arrives: reading sees the link gone
            deadline = time.monotonic() + 5
            while True:
                t.read_some(deadline)
        sock = t._ser._socket  # type: ignore[attr-defined]  # pyserial's, to check below
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            t.close()
            gc.collect()
        assert sock.fileno() == -1, "the socket was left open"
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
