"""The fixtures: ``device_session_manager``, ``device_capabilities``, ``device_session``.

Thin: the board is this process's (:mod:`pytest_mpsession.plugin.boards`), the work is the
session core's, and what happens after a test is
:func:`pytest_mpsession.plugin.recovery.finish_session`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_mpsession.plugin.boards import NO_BOARD_REASON, Board, connect_board
from pytest_mpsession.plugin.recovery import finish_session, reset_policy
from pytest_mpsession.plugin.state import CALL_REPORT, get_state

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities
    from pytest_mpsession.session.manager import DeviceSessionManager
    from pytest_mpsession.session.session import DeviceSession

__all__ = ["board_or_skip", "device_capabilities", "device_session", "device_session_manager"]


def _ensure_connected(config: pytest.Config, board: Board) -> Board:
    """Connect ``board`` if it is not (yet, or any more)."""
    if board.manager is None:
        connect_board(config, board)
    return board


def board_or_skip(config: pytest.Config) -> Board:
    """This process's board, connected; the test skips when none is configured, and fails
    with the board's one-line error when it cannot be used."""
    state = get_state(config)
    board = state.board if state is not None else None
    if board is None:
        pytest.skip(NO_BOARD_REASON)
    if board.error is not None:
        pytest.fail(board.error, pytrace=False)
    return _ensure_connected(config, board)


@pytest.fixture(scope="session")
def device_session_manager(
    request: pytest.FixtureRequest, _mpsession_board: object
) -> DeviceSessionManager:
    """The connected :class:`DeviceSessionManager` of this worker's board."""
    board = board_or_skip(request.config)
    assert board.manager is not None
    return board.manager


@pytest.fixture(scope="session")
def device_capabilities(
    request: pytest.FixtureRequest, _mpsession_board: object
) -> DeviceCapabilities:
    """The board's :class:`DeviceCapabilities` (detected once, cached across runs)."""
    board = board_or_skip(request.config)
    assert board.manager is not None
    return board.manager.capabilities


@pytest.fixture
def device_session(
    request: pytest.FixtureRequest, device_session_manager: DeviceSessionManager
) -> Generator[DeviceSession, None, None]:
    """A fresh :class:`DeviceSession` for the test, cleaned up after it per ``--mp-reset`` or
    the ``mp_reset`` marker, even when the test failed or timed out."""
    config = request.config
    board = board_or_skip(config)
    policy = reset_policy(request.node, board.settings.reset)
    session = device_session_manager.create_session(timeout=board.settings.timeout)
    config.hook.pytest_mpsession_session_start(session=session)
    try:
        yield session
    finally:
        report = request.node.stash.get(CALL_REPORT, None)
        finish_session(
            config,
            device_session_manager,
            session,
            policy,
            interrupted=report is None or not report.passed,
            timeout=board.settings.timeout,
            item=request.node,
        )
