"""The session core on real boards: the bare MicroPython unix port and every emulator
profile (``board_port``), through the real Communicator.

What is proven here: isolation of consecutive and concurrent sessions, every cleanup policy,
deployment caching, the filesystem context, background threads, and many host threads
sharing one board.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mpsession.errors import DeviceConnectionError, DeviceError, MpSessionError
from pytest_mpsession.session import (
    BackgroundThreadError,
    DeviceSession,
    DeviceSessionManager,
    FileInfo,
    RemoteObject,
    ResourceCleanupError,
    SessionState,
)

pytestmark = pytest.mark.timeout(120)


def _profile(request: pytest.FixtureRequest) -> str:
    callspec = getattr(request.node, "callspec", None)
    return str(callspec.params.get("board_port", "unix")) if callspec else "unix"


@pytest.fixture
def profile(request: pytest.FixtureRequest) -> str:
    """The emulator profile behind ``board_port`` ("unix": the bare unix port)."""
    return _profile(request)


@pytest.fixture
def manager(board_port: str) -> Iterator[DeviceSessionManager]:
    """A manager connected to the board of ``board_port``."""
    with DeviceSessionManager.connect(board_port, timeout=20.0) as m:
        yield m


@pytest.fixture
def unix_manager(unix_port: str) -> Iterator[DeviceSessionManager]:
    """A manager connected to the bare unix port."""
    with DeviceSessionManager.connect(unix_port, timeout=20.0) as m:
        yield m


class Spy:
    """Records the code of every exchange the communicator makes."""

    def __init__(self, manager: DeviceSessionManager, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        comm = manager.communicator
        real = comm.exec

        def exec_(code: str | bytes, timeout: float | None = None, on_stdout: Any = None) -> str:
            self.sent.append(code if isinstance(code, str) else code.decode())
            return real(code, timeout=timeout, on_stdout=on_stdout)

        real_run = comm.run  # type: ignore[attr-defined]

        def run(code: str, **kwargs: Any) -> Any:
            self.sent.append(code)
            return real_run(code, **kwargs)

        monkeypatch.setattr(comm, "exec", exec_)
        monkeypatch.setattr(comm, "run", run)


def board_names(manager: DeviceSessionManager) -> list[int]:
    """Keys of the session namespaces that exist on the board right now."""
    out = manager.communicator.exec("print(sorted(_mps_ns))")
    return [int(x) for x in out.strip().strip("[]").split(",") if x.strip()]


# -- isolation ---------------------------------------------------------------------------------


def test_isolation_between_consecutive_sessions(manager: DeviceSessionManager) -> None:
    with manager.create_session() as first:
        assert first.exec("secret = 41\nprint(secret + 1)").strip() == "42"
        assert first.context.is_variable_defined("secret")
    with manager.create_session() as second:
        assert not second.context.is_variable_defined("secret")
        with pytest.raises(DeviceError) as info:
            second.eval("secret")
        assert info.value.exc_type == "NameError"
        assert second.context.global_variables == {}
    assert board_names(manager) == []


def test_isolation_between_concurrent_sessions(manager: DeviceSessionManager) -> None:
    a, b = manager.create_session(), manager.create_session()
    a.exec("x = 'a'\nonly_a = [1, 2]")
    b.exec("x = 'b'")
    assert (a.eval("x"), b.eval("x")) == ("a", "b")
    assert not b.context.is_variable_defined("only_a")
    b.context.define_variable("blob", {"k": (1, b"\x00\xff"), "s": {3}})
    assert b.eval("blob") == {"k": (1, b"\x00\xff"), "s": {3}}
    assert not a.context.is_variable_defined("blob")
    a.exec("def f():\n    return x\n")
    variables = a.context.global_variables
    assert variables["x"] == "a" and variables["only_a"] == [1, 2]
    assert isinstance(variables["f"], RemoteObject) and "function" in variables["f"].repr_text
    a.cleanup()
    assert b.eval("x") == "b"  # a's cleanup left b alone
    b.cleanup()


def test_a_helper_install_cut_short_is_done_again(manager: DeviceSessionManager) -> None:
    # A recovery's Ctrl-C can land while the core's baseline is being taken: the board is
    # left with the core's first names but no baseline. The next install must redo it in
    # full, not take the half-done core for a whole one (the cleanup would then fail with
    # "'function' object is not subscriptable" and soft reset the board).
    from pytest_mpsession.session.board import CORE

    cut_short = CORE.replace(" _mps_b=_mps_B(_mps_bm())\n", " raise KeyboardInterrupt\n")
    assert cut_short != CORE
    with pytest.raises(MpSessionError, match="KeyboardInterrupt"):
        manager.communicator.exec(cut_short)
    escalated: list[object] = []
    manager.add_listener("cleanup_escalated", lambda *a: escalated.append(a))
    with manager.create_session() as s:
        s.exec("import sys\nx = 41")
        assert s.eval("x + 1") == 42
    assert s.cleanup_escalation is None
    assert escalated == []
    assert manager.communicator.eval("type(_mps_b) is list") is True


def test_exec_eval_and_error_lines(manager: DeviceSessionManager) -> None:
    with manager.create_session() as s:
        assert s.exec("for i in range(3):\n    print(i)\n").replace("\r\n", "\n") == "0\n1\n2\n"
        assert s.eval("[1, 'two', b'3', None, (True,)]") == [1, "two", b"3", None, (True,)]
        assert s.eval("print('noise') or 7") == 7  # printed output does not spoil the value
        with pytest.raises(DeviceError) as info:
            s.exec("a = 1\nb = 0\nc = a // b\n")
        err = info.value
        assert err.exc_type == "ZeroDivisionError"
        assert 'File "<string>", line 3' in err.traceback  # the user's line, as written
        assert "<stdin>" not in err.traceback and "_mps" not in err.traceback
        assert s.eval("a + 1") == 2  # what ran before the error stays


# -- deployment ----------------------------------------------------------------------------------


def scale(value, factor=2):  # type: ignore[no-untyped-def]
    """Deployed to the board by the tests below."""
    total = value * factor
    return [total, {"v": value}]


def fails(n):  # type: ignore[no-untyped-def]
    """Raises on the board, two lines below."""
    m = n - 1
    return 10 // m


def test_call_deploys_once_and_again_after_soft_reset(
    manager: DeviceSessionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(manager, monkeypatch)
    s = manager.create_session()
    assert s.call(scale, 3) == [6, {"v": 3}]
    assert any("def scale" in code for code in spy.sent)
    sig = next(iter(s.executor.deployed_methods))
    assert sig.endswith("scale(value, factor=2)")
    info = s.executor.deployed_methods[sig]
    assert info.size > 50 and len(info.hash) == 16 and s.executor.is_method_deployed(sig)
    spy.sent.clear()
    assert s.call(scale, 4, factor=10) == [40, {"v": 4}]
    assert len(spy.sent) == 1 and "def scale" not in spy.sent[0]  # no source the second time
    s.cleanup(policy="soft")
    s2 = manager.create_session()
    spy.sent.clear()
    assert s2.call(scale, 1) == [2, {"v": 1}]
    assert any("def scale" in code for code in spy.sent)
    # the first session's view: its deployment went with the reset
    assert s.executor.deployed_methods == {}
    s2.cleanup()


def test_call_redeploys_when_the_source_changes(
    manager: DeviceSessionManager, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def load(body: str) -> Any:
        path = tmp_path / "mod_under_test.py"
        path.write_text(f"def compute(x):\n    return {body}\n")
        spec = importlib.util.spec_from_file_location("mod_under_test", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.compute

    import linecache

    spy = Spy(manager, monkeypatch)
    with manager.create_session() as s:
        assert s.call(load("x + 1"), 1) == 2
        linecache.clearcache()
        spy.sent.clear()
        assert s.call(load("x * 100"), 2) == 200
        assert any("x * 100" in code for code in spy.sent)
        assert len(s.executor.deployed_methods) == 1


def test_call_error_points_at_the_host_file_and_line(manager: DeviceSessionManager) -> None:
    with manager.create_session() as s:
        with pytest.raises(DeviceError) as info:
            s.call(fails, 1)
        err = info.value
        assert err.exc_type == "ZeroDivisionError"
        line = fails.__code__.co_firstlineno + 3
        assert f'File "{__file__}", line {line}, in fails' in err.traceback
        assert "return 10 // m" in err.traceback
        assert "<stdin>" not in err.traceback


def test_call_arguments_must_be_literals(manager: DeviceSessionManager) -> None:
    with manager.create_session() as s:
        with pytest.raises(TypeError, match="cannot send a object"):
            s.call(scale, object())
        assert s.call(scale, b"ab", factor=2) == [b"abab", {"v": b"ab"}]


# -- cleanup policies ---------------------------------------------------------------------------


def test_clean_policy_gives_memory_back(manager: DeviceSessionManager) -> None:
    def cycle() -> int:
        s = manager.create_session()
        s.exec("data = [bytearray(40) for i in range(20)]\ndef keep():\n    return data\n")
        s.call(scale, 2)
        s.cleanup()
        assert s.board_mem_free is not None
        return s.board_mem_free

    cycle()  # the first run interns the names it uses, for good
    baseline = cycle()
    later = [cycle() for _ in range(6)]
    # Back to the baseline, give or take a few 16-byte blocks that the conservative GC
    # keeps for stale words on the stack (it varies both ways; a leak only grows).
    assert min(later) >= baseline - 256, (baseline, later)
    assert board_names(manager) == []


def test_soft_policy_resets_the_board(manager: DeviceSessionManager) -> None:
    other = manager.create_session()
    other.exec("mine = 1")
    s = manager.create_session()
    s.exec("x = 1")
    before = manager.reset_count
    s.cleanup(policy="soft")
    assert manager.reset_count == before + 1
    assert manager.state is SessionState.CONNECTED
    # a soft reset empties the board for every session; the core reinstalls itself
    assert not other.context.is_variable_defined("mine")
    with manager.create_session() as fresh:
        assert fresh.eval("1 + 1") == 2
    other.cleanup()


def test_hard_policy(manager: DeviceSessionManager, profile: str) -> None:
    s = manager.create_session()
    s.exec("x = 1")
    before = manager.reset_count
    if profile == "unix":
        # The bare unix port has no reset line and no machine.reset(): the failure is
        # reported clearly, and the board stays usable.
        with pytest.raises(ResourceCleanupError) as info:
            s.cleanup(policy="hard")
        assert isinstance(info.value.errors[0], DeviceConnectionError)
        assert "hard-reset" in str(info.value)
    else:
        s.cleanup(policy="hard")
        assert manager.reset_count > before
    with manager.create_session() as fresh:
        assert fresh.eval("2 * 21") == 42
        assert not fresh.context.is_variable_defined("x")


def test_none_policy_leaves_the_board_alone(manager: DeviceSessionManager) -> None:
    s = manager.create_session()
    s.exec("x = 1")
    s.set_state("host", 1)
    s.cleanup(policy="none")
    assert s.closed and s.get_state("host") is None
    assert board_names(manager) == [s._key]  # still on the board, as asked
    with pytest.raises(MpSessionError, match="cleaned up"):
        s.exec("x")


# -- filesystem ----------------------------------------------------------------------------------


@pytest.fixture
def fs_session(manager: DeviceSessionManager, profile: str) -> Iterator[DeviceSession]:
    """A session whose board directory is scratch space: the emulated flash, or on the
    ``unix`` profile the confined engine's private folder (the host's other folders are out
    of its reach)."""
    with manager.create_session() as s:
        if profile == "legacy":
            # What known capabilities of a 16 KB board select (memory_free < 32 KB)
            s.fs.chunk_size, s.fs.read_chunk_size = 128, 64
        yield s


def test_file_written_listed_read_removed(fs_session: DeviceSession, profile: str) -> None:
    fs = fs_session.fs
    # every byte value, control bytes, quotes; several chunks (a 16 KB board: one KB less)
    copies = 1 if profile == "legacy" else 5
    data = bytes(range(256)) * copies + b"\r\n\x04\x03'\"\\"
    assert fs.write("mps_data.bin", data) is True
    assert "mps_data.bin" in fs.listdir()
    assert fs.read("mps_data.bin") == data
    assert fs.cached_file_info["mps_data.bin"] == FileInfo(len(data), "file")

    # same content again: nothing is written
    assert fs.write("mps_data.bin", data) is False
    # different content of the same size is written
    assert fs.write("mps_data.bin", data[::-1]) is True
    assert fs.read("mps_data.bin") == data[::-1]
    fs.write("mps_text.txt", "héllo\n")
    assert fs.read("mps_text.txt") == "héllo\n".encode()
    info = fs.refresh_directory(".")
    assert info["mps_text.txt"] == FileInfo(7, "file")
    fs.remove("mps_data.bin")
    fs.remove("mps_text.txt")
    assert "mps_data.bin" not in fs.listdir()
    assert "mps_data.bin" not in fs.cached_file_info
    with pytest.raises(DeviceError) as err:
        fs.read("mps_data.bin")
    assert err.value.exc_type == "OSError"


def test_directories_and_cache(fs_session: DeviceSession) -> None:
    fs = fs_session.fs
    has_mkdir = fs_session.exec("import os\nprint(hasattr(os, 'mkdir'))").strip() == "True"
    if not has_mkdir:  # a flat 1.9 filesystem
        with pytest.raises(DeviceError, match=r"no os\.mkdir"):
            fs.mkdir("sub")
        return
    assert fs.current_directory.startswith("/")
    fs.mkdir("mps_sub")
    fs.write("mps_sub/a.txt", b"abc")
    assert fs.cached_file_info["mps_sub"] == FileInfo(0, "dir")
    assert fs.listdir("mps_sub") == ["a.txt"]
    assert fs.refresh_directory("mps_sub") == {"a.txt": FileInfo(3, "file")}
    fs.invalidate_cache("mps_sub")
    assert not any(k.startswith("mps_sub") for k in fs.cached_file_info)
    fs.refresh_directory("mps_sub")
    fs_session.exec("import os\nos.remove('mps_sub/a.txt')")  # changed behind the cache
    assert fs.listdir("mps_sub") == []
    assert "mps_sub/a.txt" not in fs.cached_file_info  # listdir pruned it
    fs_session.exec("os.rmdir('mps_sub')")
    fs.invalidate_cache()
    assert fs.cached_file_info == {}


# -- background threads --------------------------------------------------------------------------


def spin(counter_name):  # type: ignore[no-untyped-def]
    """Counts until asked to stop."""
    import time

    globals()[counter_name] = 0
    while not mps_should_stop():  # type: ignore[name-defined]  # noqa: F821
        globals()[counter_name] += 1
        time.sleep_ms(1)


def stubborn():  # type: ignore[no-untyped-def]
    """Never checks the stop flag."""
    import time

    while True:
        time.sleep_ms(20)


def _has_threads(manager: DeviceSessionManager) -> bool:
    out = manager.communicator.exec(
        "try:\n import _thread\n print(1)\nexcept ImportError:\n print(0)"
    )
    return out.strip() == "1"


def test_background_thread_stopped_at_cleanup(manager: DeviceSessionManager) -> None:
    s = manager.create_session()
    if not _has_threads(manager):
        with pytest.raises(MpSessionError, match="no _thread module"):
            s.executor.start_thread(spin, "n")
        s.cleanup()
        return
    handle = s.executor.start_thread(spin, "n")
    assert handle.is_alive()
    assert s.executor.active_background_threads == [handle]
    s.cleanup()
    assert handle.state == "stopped" and not handle.is_alive()
    assert s.executor.active_background_threads == []
    assert board_names(manager) == []


def test_thread_that_will_not_stop_is_reported(manager: DeviceSessionManager) -> None:
    manager.thread_stop_timeout = 0.1
    s = manager.create_session()
    if not _has_threads(manager):
        with pytest.raises(MpSessionError, match="requires_feature"):
            s.executor.start_thread(stubborn)
        s.cleanup()
        return
    handle = s.executor.start_thread(stubborn)
    with pytest.raises(ResourceCleanupError) as info:
        s.cleanup()
    (error,) = info.value.errors
    assert isinstance(error, BackgroundThreadError) and error.thread_ids == [handle.thread_id]
    assert handle.state == "stuck"
    with manager.create_session() as after:  # the board is still usable
        assert after.eval("3") == 3


# -- the manager on the unix port: connection, timeouts, capabilities ---------------------------


def test_open_announces_connecting_and_connected(unix_port: str) -> None:
    manager = DeviceSessionManager()
    seen: list[tuple[str, str]] = []
    manager.add_listener("state_changed", lambda old, new: seen.append((old.value, new.value)))
    assert manager.state is SessionState.DISCONNECTED
    manager.open(unix_port)
    with manager.create_session() as s:
        assert s.eval("1 + 1") == 2
    manager.terminate_session()
    manager.open()  # the same port again
    manager.close()
    assert seen[:2] == [("disconnected", "connecting"), ("connecting", "connected")]
    assert seen[-3:] == [
        ("connecting", "connected"),
        ("connected", "disconnected"),
        ("disconnected", "closed"),
    ]
    assert ("connected", "disconnected") in seen[2:-3]
    assert all(pair in (("connected", "busy"), ("busy", "connected")) for pair in seen[2:-5])


def test_open_failure_is_error_state(tmp_path: Path) -> None:
    manager = DeviceSessionManager()
    with pytest.raises(DeviceConnectionError):
        manager.open(str(tmp_path / "no-such-port"), timeout=1.0)
    assert manager.state is SessionState.ERROR
    assert isinstance(manager.last_error, DeviceConnectionError)
    with pytest.raises(DeviceConnectionError, match="manager is in the error state"):
        manager.create_session()
    manager.close()
    assert manager.state is SessionState.CLOSED


def test_timeout_interrupts_and_the_session_goes_on(unix_manager: DeviceSessionManager) -> None:
    from pytest_mpsession.errors import DeviceTimeout

    with unix_manager.create_session() as s:
        s.exec("kept = 5")
        with pytest.raises(DeviceTimeout):
            s.exec("while True:\n    pass\n", timeout=0.5)
        assert unix_manager.state is SessionState.CONNECTED
        assert s.eval("kept") == 5  # interrupted, not reset: the namespace is intact


def test_capabilities_detected_lazily_and_refreshed(unix_manager: DeviceSessionManager) -> None:
    caps = unix_manager.capabilities
    assert caps.implementation == "micropython" and caps.supports_feature("threading")
    assert unix_manager.capabilities is caps  # detected once
    with unix_manager.create_session() as s:
        info = s.context.device_info
        assert info["device_type"] == caps.device_type and info["port"] == unix_manager.port


def test_given_capabilities_are_used_and_a_refresh_announces_changes(unix_port: str) -> None:
    from dataclasses import replace

    with DeviceSessionManager.connect(unix_port) as probe:
        real = probe.capabilities
    stale = replace(real, firmware_version="0.0.1", version=(0, 0, 1))
    manager = DeviceSessionManager.connect(unix_port, capabilities=stale)
    changes: list[object] = []
    manager.add_listener("capabilities_changed", changes.append)
    try:
        before = manager.exchange_count
        assert manager.capabilities is stale  # no detection when they are given
        assert manager.exchange_count == before
        stale.refresh_capabilities()
        assert stale.firmware_version == real.firmware_version
        assert changes == [stale]
        stale.refresh_capabilities()  # nothing differs now: no event
        assert changes == [stale]
    finally:
        manager.close()
