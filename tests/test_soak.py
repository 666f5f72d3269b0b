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

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
from soak import run_soak


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.xfail(
    reason="open defect (issue 12): with seed 1, a hang at call ~4,988 is not brought back "
    "by the reset line ('reset line: no answer') and the board stays broken; the answers "
    "given before it are all right (0 wrong values)",
    strict=False,
)
def test_soak_10000_calls_with_faults(
    record_property: pytest.RecordProperty, tmp_path: Path
) -> None:
    result = run_soak(10_000, seed=1)
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
