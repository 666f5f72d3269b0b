"""Recovery glue: what the plugin does around each device test when the board misbehaves.

After a test that did not pass, the board is interrupted and resynchronised before its
session is cleaned up. A board fault nothing brought back is remembered; the next device
test tries one ``recover()`` first, and when that fails the board is broken and every later
device test skips at once with the reason (counted in the terminal summary). The recovery
itself is the session core's (the communicator's escalation).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_mpsession.plugin.markers import uses_board
from pytest_mpsession.plugin.options import one_line
from pytest_mpsession.plugin.state import CALL_REPORT, get_state

if TYPE_CHECKING:
    from pytest_mpsession.session.manager import DeviceSessionManager
    from pytest_mpsession.session.session import DeviceSession

__all__ = [
    "ESCALATION_PROPERTY",
    "finish_session",
    "note_escalation",
    "note_fault",
    "reset_policy",
]


def reset_policy(node: pytest.Item, default: str) -> str:
    """The cleanup policy after ``node``: its ``mp_reset`` marker's, else ``default``
    (``--mp-reset``/the ini key)."""
    mark = node.get_closest_marker("mp_reset")
    return str(mark.args[0]) if mark is not None and mark.args else default


def finish_session(
    config: pytest.Config,
    manager: DeviceSessionManager,
    session: DeviceSession,
    policy: str,
    *,
    interrupted: bool,
    timeout: float,
    item: pytest.Item | None = None,
) -> None:
    """After a test: bring the board back if the test did not pass (it may have left code
    running, or pytest-timeout may have stopped it in the middle of an exchange), then clean
    the session up per ``policy``.

    A board that failed and did not come back (the manager in ERROR, or the communicator
    broken) is left alone here: the session is cleaned on the host only, and the next
    device test tries one recovery (see :func:`pytest_runtest_setup`)."""
    from pytest_mpsession.errors import MpSessionError

    if manager.broken is not None:
        try:
            config.hook.pytest_mpsession_session_finish(session=session)
        finally:
            _cleanup(session, "none", timeout)
        return
    try:
        if interrupted:
            # Ctrl-C and resync: the raw-REPL conversation may be cut mid-exchange (the
            # communicator escalates to a full recovery when Ctrl-C is not enough).
            try:
                manager.communicator.interrupt(timeout)
            except MpSessionError:
                pass  # the manager's state and ``broken`` say what is left of the board
        config.hook.pytest_mpsession_session_finish(session=session)
    finally:
        if manager.broken is not None:
            policy = "none"  # nothing to clean on a board that is gone
        try:
            _cleanup(session, policy, timeout)
        finally:
            if item is not None and session.cleanup_escalation:
                note_escalation(item, session.cleanup_escalation)


#: the user property a test's teardown report carries when its cleanup had to reset the board
ESCALATION_PROPERTY = "mpsession_cleanup_escalated"


def note_escalation(item: pytest.Item, reason: str) -> None:
    """Say in the report that the test's ``clean`` cleanup could not undo what it did to the
    board and escalated (a soft reset): a teardown section of the test, a user property (so
    it reaches the xdist controller and the JUnit record) and a line of the terminal summary.
    Not a failure: the test's verdict stands, the next test starts on a clean board."""
    item.add_report_section("teardown", "mpsession", f"cleanup escalated: {reason}")
    item.user_properties.append((ESCALATION_PROPERTY, reason))


def _cleanup(session: DeviceSession, policy: str, timeout: float) -> None:
    """Clean the session up; a board fault during it fails the test's teardown with the
    fault's one line (what happened to the board), not the plugin's traceback."""
    from pytest_mpsession.errors import BoardFault
    from pytest_mpsession.session.errors import ResourceCleanupError

    try:
        session.cleanup(policy=policy, timeout=timeout)
    except ResourceCleanupError as exc:
        faults = [e for e in exc.errors if isinstance(e, BoardFault)]
        if not faults or len(faults) != len(exc.errors):
            raise
        pytest.fail(
            f"cleanup of the device session: {type(faults[0]).__name__}: {one_line(faults[0])}",
            pytrace=False,
        )


def _fault_line(exc: BaseException, port: str) -> str:
    """A fault's message in one line, without the port it starts with."""
    text = one_line(exc)
    return text[len(port) + 2 :] if text.startswith(f"{port}: ") else text


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a device test: after a board fault nothing brought back, try one recovery;
    when that fails the board is broken, and this and every later device test skips at once
    (one dead board must not turn into one timeout per remaining test)."""
    config = item.config
    state = get_state(config)
    if state is None or state.board is None or not uses_board(item):
        return
    board = state.board
    if state.broken is None:
        manager = board.manager
        if manager is None:
            return
        pending = state.fault
        if pending is None and manager.broken is not None:
            pending = ("an earlier test", manager.broken)
        if pending is None:
            return
        state.fault = None
        from pytest_mpsession.errors import MpSessionError

        try:
            manager.recover()
        except MpSessionError:
            test, reason = pending
            state.broken = f"board at {board.port} is broken after {test}: {reason}"
        else:
            return
    state.broken_skips += 1
    pytest.skip(state.broken)


def note_fault(item: pytest.Item, err: BaseException | None) -> None:
    """Remember that the board failed during ``item`` and did not come back."""
    state = get_state(item.config)
    if state is None or state.board is None or state.fault is not None:
        return
    board = state.board
    manager = board.manager
    from pytest_mpsession.errors import BoardFault

    reason: str | None = None
    if isinstance(err, BoardFault) and not err.recovered:
        reason = _fault_line(err, board.port)
    elif manager is not None and manager.broken is not None:
        last = manager.last_error if manager.state == "error" else None
        reason = _fault_line(last, board.port) if last is not None else manager.broken
    if reason is not None:
        state.fault = (item.nodeid, reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After a device test (its session cleaned up): note a board that did not come back."""
    try:
        return (yield)
    finally:
        if uses_board(item):
            note_fault(item, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each test's call report (the ``device_session`` teardown needs it), and a
    board fault the test failed on (the next device test tries a recovery first)."""
    report = yield
    if call.when == "call":
        item.stash[CALL_REPORT] = report
    excinfo = call.excinfo
    if excinfo is not None and report.failed:
        from pytest_mpsession.errors import BoardFault

        if isinstance(excinfo.value, BoardFault):
            # what happened to the board is the test's failure; the next test either gets
            # the board back (the communicator recovered it) or a recovery attempt
            note_fault(item, excinfo.value)
    return report
