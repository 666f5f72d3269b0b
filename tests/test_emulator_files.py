"""The emulator and the host's files and ports: ``--pty`` links, ``flash=`` images, the TCP
server's one client, the board's identity, the engine check (issues 13 and 16)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.emulator import EmulatorError, PtyBoard, sandbox
from pytest_mpsession.emulator.__main__ import BUSY_LINE, _parse_tcp, main
from pytest_mpsession.emulator.flash import check_image

pytestmark = pytest.mark.timeout(60)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def cli(*args: str) -> Iterator[subprocess.Popen[str]]:
    p = subprocess.Popen(
        [sys.executable, "-m", "pytest_mpsession.emulator", *args],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield p
    finally:
        if p.poll() is None:
            p.terminate()
        p.wait(10)
        if p.stderr is not None:
            p.stderr.close()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_mpsession.emulator", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


# -------------------------------------------------------------------------------- --pty


def test_pty_never_replaces_a_file(tmp_path: Path) -> None:
    victim = tmp_path / "test_x.py"
    victim.write_text("def test(): pass\n")
    before = digest(victim)
    r = run_cli("--pty", str(victim))
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and str(victim) in r.stderr and "remove it" in r.stderr
    assert digest(victim) == before


def test_pty_never_replaces_a_link_to_something_else(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    target.write_text("keep")
    link = tmp_path / "board"
    link.symlink_to(target)
    r = run_cli("--pty", str(link))
    assert r.returncode == 2 and str(link) in r.stderr
    assert os.readlink(link) == str(target) and target.read_text() == "keep"
    # a link to a PTY that is in use is not ours either
    busy = tmp_path / "busy"
    with PtyBoard("unix") as b:
        busy.symlink_to(b.path)
        r = run_cli("--pty", str(busy))
        assert r.returncode == 2 and str(busy) in r.stderr
        assert os.readlink(busy) == b.path


def test_pty_replaces_a_dangling_pty_link_and_removes_only_its_own(
    tmp_path: Path, raw_repl: type
) -> None:
    link = tmp_path / "board"
    link.symlink_to("/dev/pts/987654")  # left behind by a killed emulator
    with cli("--pty", str(link), "--profile", "unix") as p:
        assert p.stderr is not None
        assert "board on /dev/pts/" in p.stderr.readline()
        c = raw_repl(str(link))
        c.enter_raw()
        assert c.exec("print(6*7)") == "42\n"
        c.close()
        # someone replaces the link meanwhile: the emulator must leave theirs alone
        link.unlink()
        link.symlink_to(tmp_path / "theirs")
        p.terminate()
        p.wait(10)
    assert os.readlink(link) == str(tmp_path / "theirs")


# -------------------------------------------------------------------------------- flash=


def foreign(tmp_path: Path) -> dict[str, Path]:
    """Files that are not a generic board's flash image, each with known content."""
    files = {}
    plain = tmp_path / "notes.txt"
    plain.write_bytes(os.urandom(1000))
    files["ordinary file"] = plain
    big = tmp_path / "same-size.bin"
    big.write_bytes(os.urandom(1024 * 1024))  # the generic flash's size, not an image
    files["same size"] = big
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    files["empty file"] = empty
    return files


@pytest.mark.parametrize("kind", ["ordinary file", "same size", "empty file"])
def test_flash_never_writes_a_file_that_is_not_an_image(tmp_path: Path, kind: str) -> None:
    path = foreign(tmp_path)[kind]
    before = digest(path)
    with pytest.raises(EmulatorError) as info:
        PtyBoard("generic", flash=str(path))
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and "not a flash image" in msg
    assert digest(path) == before


def test_flash_of_another_profile_is_kept(tmp_path: Path, raw_repl: type) -> None:
    img = tmp_path / "legacy.img"
    with PtyBoard("legacy", flash=str(img), baudrate=115200) as b:
        c = raw_repl(b.path)
        c.enter_raw()
        c.exec("f = open('keep.txt', 'w'); f.write('x'); f.close()")
        c.close()
    before = digest(img)
    for other in ("generic", "stm32"):  # another size; stm32: the same block size, more blocks
        with pytest.raises(EmulatorError) as info:
            PtyBoard(other, flash=str(img))
        assert "not a flash image" in str(info.value) and str(img) in str(info.value)
        assert digest(img) == before
    with PtyBoard("legacy", flash=str(img), baudrate=115200) as b:  # its own board: files kept
        c = raw_repl(b.path)
        c.enter_raw()
        assert "keep.txt" in c.exec("import os; print(os.listdir())")


def test_flash_on_fifo_directory_device_or_missing_folder(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = {
        str(fifo): "a FIFO",
        str(tmp_path): "a directory",
        "/dev/null": "a device",
        str(tmp_path / "no" / "such" / "flash.img"): "does not exist",
    }
    for path, words in cases.items():
        with pytest.raises(EmulatorError) as info:
            PtyBoard("generic", flash=path)
        msg = str(info.value)
        assert words in msg and "\n" not in msg, msg
    assert not (tmp_path / "no").exists()
    assert sorted(os.listdir(tmp_path)) == ["fifo"]


def test_flash_image_is_locked(tmp_path: Path) -> None:
    img = tmp_path / "flash.img"
    with PtyBoard("generic", flash=str(img)):
        with pytest.raises(EmulatorError, match=f"flash image in use by pid {os.getpid()}"):
            PtyBoard("generic", flash=str(img))
        code = textwrap.dedent(
            f"""
            import serial, pytest_mpsession.emulator
            try:
                serial.serial_for_url("mpmock://generic?flash={img}")
            except serial.SerialException as e:
                print(e)
            """
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert f"flash image in use by pid {os.getpid()}" in r.stdout, r
    with PtyBoard("generic", flash=str(img)):  # released with the board
        pass


def test_check_image_knows_images() -> None:
    assert check_image(bytes(4096), 4096, 512) is None  # erased
    assert check_image(b"\xff" * 4096, 4096, 512) is None
    assert "4000 bytes" in (check_image(bytes(4000), 4096, 512) or "")
    assert "not a littlefs" in (check_image(b"x" * 4096, 4096, 512) or "")


# -------------------------------------------------------------------------- identity (#16.9)


def unique_id(raw_repl: type, board: PtyBoard) -> str:
    c = raw_repl(board.path)
    c.enter_raw()
    uid = c.exec("import machine; print(machine.unique_id())")
    c.close()
    return uid


def test_identity_is_stable_per_profile_and_image(tmp_path: Path, raw_repl: type) -> None:
    with PtyBoard("generic") as a:
        first = unique_id(raw_repl, a)
    with PtyBoard("generic") as a:
        assert unique_id(raw_repl, a) == first
    with PtyBoard("esp32") as a:
        assert unique_id(raw_repl, a) != first
    with PtyBoard("generic", flash=str(tmp_path / "a.img")) as a:
        ida = unique_id(raw_repl, a)
    with PtyBoard("generic", flash=str(tmp_path / "a.img")) as a:
        assert unique_id(raw_repl, a) == ida
    with PtyBoard("generic", flash=str(tmp_path / "b.img")) as a:
        assert unique_id(raw_repl, a) not in (ida, first)


# ------------------------------------------------------------------------------ the engine


def test_engine_that_is_not_micropython_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MP_MOCK_ENGINE", "/bin/true")
    with pytest.raises(EmulatorError) as info:
        PtyBoard("generic")
    msg = str(info.value)
    assert "MP_MOCK_ENGINE" in msg and "not a MicroPython unix port" in msg and "\n" not in msg


def test_engine_that_ends_before_its_prompt_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "micropython"
    fake.write_text("#!/bin/sh\n# not micropython after all\necho broken engine\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MP_MOCK_ENGINE", str(fake))
    with pytest.raises(EmulatorError) as info:
        PtyBoard("generic")
    msg = str(info.value)
    # the engine's end is seen at once (not the boot timeout), and the variable is named
    assert "ended before its prompt" in msg and "MP_MOCK_ENGINE" in msg, msg
    assert "did not boot within" not in msg


# ----------------------------------------------------------------------------------- TCP


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("2217", ("127.0.0.1", 2217)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:4000", ("localhost", 4000)),
        (":5000", ("127.0.0.1", 5000)),
    ],
)
def test_tcp_spec_parsed_by_the_standard_library(spec: str, expected: tuple[str, int]) -> None:
    assert _parse_tcp(spec) == expected


@pytest.mark.parametrize("spec", ["host", "1.2.3.4:x", "[::1]", "h:99999", "a:1/b"])
def test_bad_tcp_spec(spec: str) -> None:
    with pytest.raises(EmulatorError, match="expected HOST:PORT"):
        _parse_tcp(spec)


def read_line(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(100)
        if not chunk:
            break
        data += chunk
    return data


def test_tcp_serves_one_client_and_refuses_a_second(raw_repl: type) -> None:
    with cli("--tcp", "127.0.0.1:0", "--profile", "unix") as p:
        assert p.stderr is not None
        line = p.stderr.readline()
        port = int(line.rsplit(":", 1)[1])
        first = raw_repl(f"socket://127.0.0.1:{port}")
        first.enter_raw()
        first.exec("x = 5")
        with socket.create_connection(("127.0.0.1", port)) as second:
            assert read_line(second) == BUSY_LINE
            second.settimeout(10)
            assert second.recv(100) == b""  # and let go
        # the first never noticed
        assert first.exec("print(x)") == "5\n"
        first.close()
        # once the first is gone, the next one is served
        third = raw_repl(f"socket://127.0.0.1:{port}")
        third.enter_raw()
        assert third.exec("print(x)") == "5\n"
        third.close()


def test_tcp_on_ipv6_loopback(raw_repl: type) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with cli("--tcp", "[::1]:0", "--profile", "unix") as p:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert "tcp://[::1]:" in line, line
        port = int(line.rsplit(":", 1)[1])
        c = raw_repl(f"socket://[::1]:{port}")
        c.enter_raw()
        assert c.exec("print(6*7)") == "42\n"
        c.close()


def test_tcp_beyond_loopback_refused_without_confinement(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        sandbox, "unavailable_line", lambda s=None: "mpmock: this kernel offers no Landlock"
    )
    assert main(["--tcp", "0.0.0.0:0"]) == 2
    err = capsys.readouterr().err
    assert "no Landlock" in err.splitlines()[0]
    assert "refusing" in err and "loopback" in err
