"""Host safety: board code cannot reach host files, cannot exhaust the host's memory, can
always be interrupted, and no engine process outlives its board, even if pytest is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(60)

DISGUISED = ["generic", "esp32", "rp2", "stm32", "legacy"]


@pytest.fixture(params=DISGUISED)
def board(request: pytest.FixtureRequest) -> PtyBoard:
    b = PtyBoard(request.param)
    request.addfinalizer(b.close)
    return b


def test_no_host_file_reachable(board: PtyBoard, raw_repl: type, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    c = raw_repl(board.path)
    c.enter_raw()
    for path in [
        str(secret),
        "/etc/passwd",
        "../../etc/passwd",
        "/../etc/passwd",
        "../" * 20 + "etc/passwd",
        f"..{secret}",
        "/proc/self/environ",
    ]:
        out, err = c.exec_raw(f"print(open({path!r}).read())")
        assert b"OSError" in err, (path, out)
    # the board's / is its flash, and only its flash
    c.exec("f = open('mine.txt', 'w'); f.write('board'); f.close()")
    listing = c.exec(
        "import os\nfor d in ('..', '/..', '../..'):\n"
        " try:\n  os.chdir(d)\n except (OSError, AttributeError):\n  pass\n"
        "print(sorted(os.listdir('/')))"
    )
    assert listing.strip() == "['mine.txt']"
    assert not (Path.cwd() / "mine.txt").exists()
    # nothing that could reach the host: no posix VFS, no shell, no termios, no ffi
    for code in [
        "import os; os.system('true')",
        "import vfs; vfs.VfsPosix('/')",
        "import os; os.VfsPosix",
        "import termios",
        "import ffi",
        "import uos; uos.system",
    ]:
        out, err = c.exec_raw(code)
        assert b"ImportError" in err or b"AttributeError" in err, code


def test_huge_allocation_is_memory_error(board: PtyBoard, raw_repl: type) -> None:
    c = raw_repl(board.path)
    c.enter_raw()
    _out, err = c.exec_raw("b = bytearray(1 << 40)")
    assert b"MemoryError" in err
    _out, err = c.exec_raw("def fill():\n l = []\n while True:\n  l.append(bytearray(256))\nfill()")
    assert b"MemoryError" in err
    free = int(c.exec("import gc; gc.collect(); print(gc.mem_free())"))
    assert 0 < free <= board.profile.heap


def test_infinite_loop_is_always_interruptible(board: PtyBoard, raw_repl: type) -> None:
    c = raw_repl(board.path)
    c.enter_raw()
    c.exec("kept = 2")
    loops = [
        "while True:\n pass",
        "while True:\n x = [1] * 10",
        "import time\nwhile True:\n time.sleep_ms(1)",
        "while True:\n s = 'ab' * 20",
    ]
    for _ in range(5):
        for loop in loops:
            c.serial.write(loop.encode() + b"\x04")
            c.read_until(b"OK")
            c.serial.write(b"\x03")
            assert b"KeyboardInterrupt" in c.read_until(b"\x04>", timeout=5)
    # interrupted as a board is: RAM intact, never a reboot (not even inside the GC)
    assert c.exec("print(kept)").strip() == "2"
    assert board.link.stats["soft_resets"] == 0


def pid_gone(pid: int, timeout: float = 5.0) -> bool:
    """Wait (polling /proc with a deadline) for a process to be gone or a zombie."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        os.sched_yield()
    return False


def test_close_ends_the_engine() -> None:
    b = PtyBoard("generic")
    eng = b.link._engine
    assert eng is not None
    pid = eng.pid
    b.close()
    assert pid_gone(pid)


CHILD = """
import sys, time
from pytest_mpsession.emulator import PtyBoard
b = PtyBoard(sys.argv[1])
print(b.engine_pid, flush=True)
if sys.argv[2] == "exit":
    sys.exit(0)          # no close(): atexit must end the engine
sys.stdin.read()         # wait to be killed
"""


@pytest.mark.parametrize("how", ["exit", "sigkill", "sigterm"])
def test_no_orphans_when_the_owner_dies(how: str) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, "generic", how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as p:
        assert p.stdout is not None
        pid = int(p.stdout.readline())
        assert pid != p.pid or how == "exit"
        if how == "sigkill":
            p.send_signal(signal.SIGKILL)
        elif how == "sigterm":
            p.send_signal(signal.SIGTERM)
        p.wait(10)
    assert pid_gone(pid), f"engine {pid} outlived its owner ({how})"


def test_soft_reset_leaves_no_old_engines(raw_repl: type) -> None:
    with PtyBoard("generic") as b:
        c = raw_repl(b.path)
        c.enter_raw()
        pids = []
        for _ in range(3):
            pid = b.engine_pid
            assert pid is not None
            pids.append(pid)
            c.serial.write(b"\x04")
            c.read_until(b"raw REPL; CTRL-B to exit\r\n>")
        for pid in pids:
            assert pid_gone(pid)
