"""User profiles in TOML, and the CLI serving boards on PTYs and TCP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mpsession.emulator import EmulatorError, PtyBoard, load_profile

pytestmark = pytest.mark.timeout(60)

TOML = """
[mydevice]
base = "esp32"
banner = "MicroPython v1.23.0 on 2024-06-02; My Device with ESP32"
heap = 65536
missing = ["bluetooth"]

[tiny]
base = "mydevice"
heap = 32768
"""


def test_user_profile_from_toml(
    tmp_path: Path, raw_repl: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(TOML)
    p = load_profile("mydevice", str(path))
    assert (p.platform, p.heap, p.missing) == ("esp32", 65536, ("bluetooth",))
    assert load_profile("tiny", str(path)).banner == p.banner
    monkeypatch.setenv("MP_MOCK_PROFILES", str(path))
    with PtyBoard("tiny") as b:
        c = raw_repl(b.path)
        c.enter_raw()
        assert c.eval("__import__('sys').platform") == "'esp32'"
        assert b"ImportError" in c.exec_raw("import bluetooth")[1]
        assert c.exec("import network; print('ok')").strip() == "ok"
        assert int(c.exec("import gc; gc.collect(); print(gc.mem_free())")) <= 32768
    monkeypatch.delenv("MP_MOCK_PROFILES")
    c = raw_repl(f"mpmock://mydevice?profiles={path}")
    c.serial.write(b"\r\x03\x02")
    assert b"My Device with ESP32" in c.read_until(b"for more information.\r\n>>> ")


@pytest.mark.parametrize(
    "text, words",
    [
        ("[x]\nbase = 'nope'\n", ["[x] needs base = one of", "esp32"]),
        ("[x]\nbase = 'esp32'\nheep = 1\n", ["unknown key 'heep'", "heap"]),
        ("[x]\nbase = 'esp32'\nheap = 'big'\n", ["heap must be a int"]),
        ("[x\n", ["not valid TOML"]),
    ],
)
def test_bad_profiles_file(tmp_path: Path, text: str, words: list[str]) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(EmulatorError) as info:
        load_profile("x", str(path))
    for w in words:
        assert w in str(info.value)


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest_mpsession.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cli_serves_ptys_and_tcp(tmp_path: Path, raw_repl: type) -> None:
    a, b = tmp_path / "board-a", tmp_path / "board-b"
    with start_cli(
        "--pty", str(a), "--pty", str(b), "--tcp", "127.0.0.1:0", "--profile", "legacy"
    ) as p:
        assert p.stderr is not None
        lines = [p.stderr.readline() for _ in range(3)]
        assert "legacy board on /dev/pts/" in lines[0] and "legacy board on tcp://" in lines[2]
        for link in (a, b):
            c = raw_repl(str(link))
            c.enter_raw()
            assert c.exec("print(6*7)") == "42\r\n"
            c.close()
        port = int(lines[2].rsplit(":", 1)[1])
        c = raw_repl(f"socket://127.0.0.1:{port}")
        c.enter_raw()
        assert c.exec("import sys; print(sys.platform)") == "microbit\r\n"
        c.close()
        p.terminate()
        p.wait(10)
    assert not a.exists() and not b.exists()


def test_cli_tcp_defaults_to_loopback() -> None:
    with start_cli("--tcp", "0") as p:
        assert p.stderr is not None
        line = p.stderr.readline()
        assert "tcp://127.0.0.1:" in line
        p.terminate()
        p.wait(10)


def test_cli_bad_input() -> None:
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_mpsession.emulator",
            "--pty",
            "/tmp/x",
            "--profile",
            "nosuch",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "valid profiles" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "pytest_mpsession.emulator", "--pty", "/tmp/x", "-o", "bogus=1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 2 and "valid options: seed" in r.stderr
