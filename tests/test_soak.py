"""The fault-injection soak of issue 6, run by the default test command.

10,000 board calls through ``mpmock://generic?seed=N&garbage=0.01&disconnect=0.001&reset=0.001
&hang=0.001``: every call returns its own right answer or raises a typed error within its
timeout plus the recovery budget, every error matches a fault the emulator injected during
that call (so the call after a fault never fails because of it), and no value is ever wrong.
The figures go to the JUnit XML (``record_property``) and to ``soak-summary.md`` in the
test's temporary directory; ``python tests/benchmarks/soak.py`` prints them standalone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_mpsession.session import DeviceSession, DeviceSessionManager, FileInfo

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
from soak import run_soak


@pytest.mark.slow
@pytest.mark.timeout(600)  # 275 s measured with five helpers' runs on two cores
def test_soak_10000_calls_with_faults(
    record_property: pytest.RecordProperty, tmp_path: Path
) -> None:
    # A recovery budget of 3 s: on the 2-core CI machine a hung emulated board's reset line
    # (a new confined engine) did not always fit in the 2 s of the script's default, and the
    # board was then broken for every call after it (twice in four CI-like runs)
    result = run_soak(10_000, seed=1, recovery_timeout=3.0)
    for name, value in (
        ("soak_calls", result.calls),
        ("soak_elapsed_s", round(result.elapsed, 1)),
        ("soak_right_answers", result.ok),
        ("soak_outcomes", result.outcomes),
        ("soak_injected", result.injected),
        ("soak_max_call_s", round(result.max_call, 2)),
    ):
        record_property(name, value)
    (tmp_path / "soak-summary.md").write_text(result.table() + "\n")
    assert result.problems == [], "\n".join(result.problems[:20])
    assert result.ok + sum(n for k, n in result.outcomes.items() if k != "ok") == result.calls
    # the faults really happened, and each kind was met and survived
    injected = result.injected
    assert injected["garbage"] > 30 and injected["fault_resets"] > 0
    assert injected["hangs"] > 0 and injected["disconnects"] > 0
    kinds = " ".join(result.outcomes)
    for kind in ("BoardNoiseError", "BoardResetError", "BoardHungError", "BoardDisconnectedError"):
        assert kind in kinds, result.outcomes
    assert result.ok >= 0.97 * result.calls
    assert result.max_call <= result.timeout + result.recovery_timeout + 1.0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [2, 3])
def test_short_soaks_with_heavier_faults(seed: int) -> None:
    faults = "garbage=0.05&disconnect=0.01&reset=0.01&hang=0.005"
    result = run_soak(600, seed=seed, faults=faults, timeout=0.5, recovery_timeout=2.0)
    assert result.problems == [], "\n".join(result.problems[:20])
    assert result.ok >= 0.8 * result.calls


@pytest.mark.timeout(180)
def test_sessions_through_the_manager_survive_faults(caplog: pytest.LogCaptureFixture) -> None:
    # The session layer trusts reset_count to know whether its helpers are still in the
    # board's RAM: a reset the communicator missed would show as NameErrors from then on.
    from pytest_mpsession import DeviceSessionManager, ResourceCleanupError
    from pytest_mpsession.communicator import BoardFault
    from pytest_mpsession.errors import DeviceTimeout, MpSessionError

    url = "mpmock://generic?seed=9&garbage=0.02&disconnect=0.005&reset=0.005&hang=0.002"
    manager = DeviceSessionManager.connect(url, timeout=2)
    manager.communicator.recovery_timeout = 2  # type: ignore[attr-defined]
    ok = failed = 0
    try:
        for i in range(400):
            try:
                with manager.create_session() as session:
                    session.exec(f"x = {i}")
                    assert session.eval("x * 2") == i * 2
                ok += 1
            except MpSessionError as exc:
                failed += 1
                causes = exc.errors if isinstance(exc, ResourceCleanupError) else [exc]
                for cause in causes:
                    # a board fault, said as such: never a board exception (a NameError of
                    # helpers the manager wrongly believed were still there)
                    assert isinstance(cause, BoardFault | DeviceTimeout), repr(cause)
        assert manager.state.value == "connected"
    finally:
        manager.close()
    assert failed > 0 and ok >= 0.85 * 400


@pytest.mark.timeout(60)
def test_a_recovery_whose_own_code_loses_its_end_sends_it_again() -> None:
    # What stopped the 10,000-call soak (seed 1, ~call 5,000): a hang, cured by the reset
    # line; the recovery then installs its wrapper again, and the one byte of the host's
    # lost on the way (drop=) was the end of a piece (its Ctrl-D). The board waits for the
    # rest of the code, as a board does; the host waited for a reply until the recovery's
    # time was up ("reset line: no answer") and the board stayed broken for every later
    # call. Code the board does not acknowledge is sent again at once instead.
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.errors import BoardHungError

    comm = Communicator.open("mpmock://generic", timeout=5)
    try:
        # a budget far above what the steps need, so that only their order is asserted
        comm.recovery_timeout = 10.0
        assert comm.eval("1 + 1") == 2
        link = comm._transport._ser.link  # type: ignore[attr-defined]
        transport = comm._transport
        write, reopen = transport.write, transport.reopen
        sent = bytearray()
        log: list[str] = []

        def lose_the_end_of_a_piece(data: bytes) -> None:
            sent.extend(data)
            if data.endswith(b"\x04") and b"exec(y,globals())" in sent:
                log.append("lost" if "lost" not in log else "piece")
                if log[-1] == "lost":
                    data = data[:-1]  # the piece's last byte is lost on the way
            if data.endswith(b"\x04"):
                sent.clear()
            write(data)

        def reopen_logged(timeout: float) -> None:
            log.append("reopen")
            reopen(timeout)

        transport.write = lose_the_end_of_a_piece  # type: ignore[method-assign]
        transport.reopen = reopen_logged  # type: ignore[method-assign]
        link.fault_next("hang")
        with pytest.raises(BoardHungError) as info:
            comm.eval("2 + 2", timeout=0.5)
        assert info.value.recovered, info.value
        # the damaged piece was sent again within the reset line's step: no reopening
        assert log[:2] == ["lost", "piece"], log
        assert "reopen" not in log, info.value
        assert info.value.recovery.steps[-1] == "reset line", info.value
        assert comm.broken is None
        assert comm.eval("3 + 3") == 6
    finally:
        comm.close()


def lose_one_space(comm: object, pattern: bytes) -> list[bytes]:
    """From now on, the first time the host sends ``pattern`` (a part of helper source), its
    first byte is lost on the way, as drop= loses bytes; returns the list that records it."""
    transport = comm._transport  # type: ignore[attr-defined]
    write = transport.write
    lost: list[bytes] = []

    def losing(data: bytes) -> None:
        i = data.find(pattern)
        if not lost and i >= 0:
            lost.append(pattern)
            data = data[:i] + data[i + 1 :]
        write(data)

    transport.write = losing
    return lost


def _damage_reader(
    manager: DeviceSessionManager, session: DeviceSession
) -> tuple[object, object, list[bytes]]:
    """The file reader: one space lost before ``_mps_r(b)`` moves it out of its loop, and
    every file reads back empty."""
    data = bytes(range(256)) * 2
    session.fs.write("data.bin", data)
    lost = lose_one_space(manager.communicator, b"   _mps_r(b)")
    manager.uninstall(("fs_read",))
    return session.fs.read("data.bin"), data, lost


def _damage_listing(
    manager: DeviceSessionManager, session: DeviceSession
) -> tuple[object, object, list[bytes]]:
    """The listing with sizes: ``os.size(p)`` losing its ``o`` still compiles, and on a
    1.9 board (no ``os.stat``) every entry then says "vanished": an empty listing."""
    session.fs.write("a.txt", b"abc")
    lost = lose_one_space(manager.communicator, b"os.size(p)")
    manager.uninstall(("fs_read",))
    got = session.fs.refresh_directory(".").get("a.txt")
    return got, FileInfo(3, "file"), lost


def _damage_writer(
    manager: DeviceSessionManager, session: DeviceSession
) -> tuple[object, object, list[bytes]]:
    """The writer's same-content check: one space lost before the Adler sum's second line
    still compiles; on a board without hashlib the content then never matches, and a write
    of what the file already holds says it wrote it."""
    data = bytes(range(200))
    session.fs.write("same.bin", data)
    lost = lose_one_space(manager.communicator, b"     y=(y+x)%65521")
    manager.uninstall(("fs_write",))
    return session.fs.write("same.bin", data), False, lost


_DAMAGE = {"reader": _damage_reader, "listing": _damage_listing, "writer": _damage_writer}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("helper", sorted(_DAMAGE))
@pytest.mark.parametrize("profile", ["legacy", "microbit", "generic"])
def test_a_lost_byte_in_helper_source_never_gives_a_wrong_answer(profile: str, helper: str) -> None:
    # Helper source that loses a byte on the way can still compile and answer wrong (each
    # case's docstring says how). Every piece goes checked, on the 16 KB boards too: the
    # damaged piece never runs, it is sent again, and the answer is right.
    manager = DeviceSessionManager.connect(f"mpmock://{profile}", timeout=10)
    try:
        with manager.create_session() as session:
            got, expected, lost = _DAMAGE[helper](manager, session)
        assert lost, "the helper's source was not sent again"
        assert got == expected
    finally:
        manager.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    ("url", "least"),
    [("mpmock://generic?seed=5&drop=0.003&garbage=0.02", 40)],
)
def test_helpers_sent_again_and_again_on_a_lossy_link_never_answer_wrong(
    url: str, least: int
) -> None:
    # The helpers are sent again after every uninstall, on a link that loses bytes and adds
    # noise: every answer is right or a typed error, never a wrong value, file content or
    # listing, nor a NameError of a helper the manager believed was there (an uninstall
    # whose reply was lost left the manager believing them installed).
    import random

    from pytest_mpsession import DeviceSessionManager, ResourceCleanupError
    from pytest_mpsession.communicator import BoardFault
    from pytest_mpsession.errors import DeviceTimeout, MpSessionError

    rng = random.Random(5)
    manager = DeviceSessionManager.connect(url, timeout=5)
    manager.communicator.recovery_timeout = 5  # type: ignore[attr-defined]
    right = wrong = faults = 0
    try:
        for i in range(60):
            a, b = rng.randrange(10**8, 10**9), rng.randrange(10**8, 10**9)
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            try:
                with manager.create_session() as session:
                    session.exec(f"x = {a}")
                    got = session.eval(f"x + {b}")
                    session.fs.write("soak.bin", data)
                    back = session.fs.read("soak.bin")
                    names = session.context.global_variables
                if (got, back, names) == (a + b, data, {"x": a}):
                    right += 1
                else:
                    wrong += 1
            except MpSessionError as exc:
                causes = exc.errors if isinstance(exc, ResourceCleanupError) else [exc]
                for cause in causes:
                    # a board fault, or the board out of memory (said as such)
                    memory = "MemoryError" in str(cause) and "memory" in str(cause)
                    assert isinstance(cause, BoardFault | DeviceTimeout) or memory, repr(cause)
                faults += 1
            if i % 3 == 2:
                try:  # the helpers' source goes to the board again at the next use
                    manager.uninstall(("fs_read", "fs_write", "context"))
                except MpSessionError as exc:
                    assert isinstance(exc, BoardFault | DeviceTimeout), repr(exc)
    finally:
        manager.close()
    assert wrong == 0
    assert right >= least, (right, faults)
