"""mpremote (an independent client) against the emulator's PTY, on generic and legacy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = [
    pytest.mark.timeout(120),
]


def mpremote(port: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(params=["generic", "legacy"])
def board(request: pytest.FixtureRequest) -> PtyBoard:
    b = PtyBoard(request.param)
    request.addfinalizer(b.close)
    return b


def test_exec_and_eval(board: PtyBoard) -> None:
    r = mpremote(board.path, "exec", "print('hi', 6*7)", "eval", "1+2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hi", "42", "3"]


def test_fs_roundtrip(board: PtyBoard, tmp_path: Path) -> None:
    src = tmp_path / "x.py"
    if board.profile.name == "legacy":
        # mpremote's fs cp asks the board for os.stat, which a 1.9.2 micro:bit does not have:
        # it fails there exactly as on the real firmware (checked on mpmock://microbit in QEMU,
        # whose text is "'module' object has no attribute 'stat'"), and writes nothing
        src.write_text("print(5)\n")
        r = mpremote(board.path, "fs", "cp", str(src), ":x.py")
        assert r.returncode != 0, (r.stdout, r.stderr)
        assert "has no attribute 'stat'" in r.stdout + r.stderr, (r.stdout, r.stderr)
        r = mpremote(board.path, "exec", "import os; print(sorted(os.listdir()))")
        assert r.returncode == 0, r.stderr
        assert "x.py" not in r.stdout, r.stdout
        return
    src.write_text("print(5)\n" * 200)
    back = tmp_path / "back.py"
    # one mpremote run per command: each starts with a soft reset, as mpremote does
    steps = [
        ("fs", "cp", str(src), ":x.py"),
        ("fs", "cat", "x.py"),
        ("fs", "cp", ":x.py", str(back)),
        ("fs", "mkdir", "d"),
        ("exec", "import os; print(sorted(os.listdir()))"),
        ("fs", "rm", "x.py"),
        ("exec", "import os; print(sorted(os.listdir()))"),
    ]
    outs = []
    for step in steps:
        r = mpremote(board.path, *step)
        assert r.returncode == 0, (step, r.stdout, r.stderr)
        outs.append(r.stdout)
    assert back.read_text() == src.read_text()
    assert outs[1].replace("\r\n", "\n") == src.read_text()
    assert "['d', 'x.py']" in outs[4] and "['d']" in outs[6]


def test_fs_ls(board: PtyBoard) -> None:
    r = mpremote(
        board.path, "exec", "f=open('f.txt','w'); f.write('abc'); f.close()", "+", "fs", "ls"
    )
    if board.profile.name == "legacy":
        # mpremote's ls needs os.ilistdir, which a 1.9-era board does not have: it fails
        # there exactly as on such a board
        assert r.returncode != 0
        assert "no attribute 'ilistdir'" in r.stdout + r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert "3 f.txt" in r.stdout


def test_soft_reset_and_resume(board: PtyBoard) -> None:
    r = mpremote(board.path, "exec", "x = 1", "+", "resume", "eval", "x")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "1"
    r = mpremote(
        board.path,
        "exec",
        "x = 1",
        "+",
        "soft-reset",
        "+",
        "resume",
        "exec",
        "print('x' in globals())",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "False"


def test_files_survive_soft_reset(board: PtyBoard) -> None:
    r = mpremote(
        board.path,
        "exec",
        "f=open('keep.txt','w'); f.write('kept'); f.close()",
        "+",
        "soft-reset",
        "+",
        "resume",
        "fs",
        "cat",
        "keep.txt",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("kept")
