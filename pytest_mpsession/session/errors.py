"""Errors of the session core, all under :class:`~pytest_mpsession.errors.MpSessionError`."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_mpsession.errors import MpSessionError

__all__ = ["BackgroundThreadError", "ResourceCleanupError", "StateTransitionError"]


class StateTransitionError(MpSessionError, RuntimeError):
    """The manager tried a state change its transition table forbids: a bug, not a user
    error (see :data:`pytest_mpsession.session.states.TRANSITIONS`)."""


class ResourceCleanupError(MpSessionError):
    """One or more parts of a session's cleanup failed.

    Cleanup never stops at the first failure: every resource is cleaned (newest first), the
    board is cleaned per the policy, and only then are all failures raised together in this
    one error. ``errors`` holds them in the order they happened (Python 3.10 has no
    ``ExceptionGroup``; on 3.11+ catch this class, not ``except*``).
    """

    def __init__(self, session_id: str, errors: Sequence[BaseException]) -> None:
        self.session_id = session_id
        self.errors: list[BaseException] = list(errors)
        parts = "; ".join(f"{type(e).__name__}: {e}" for e in self.errors)
        n = len(self.errors)
        super().__init__(
            f"cleanup of session {session_id} had {n} failure{'s' if n != 1 else ''}: {parts}"
        )


class BackgroundThreadError(MpSessionError):
    """Background threads of a session did not stop at cleanup (they never checked
    ``mps_should_stop()``, or block). ``thread_ids`` names them; they keep running on the
    board, holding their memory, until the board is reset."""

    def __init__(self, message: str, *, thread_ids: Sequence[int]) -> None:
        super().__init__(message)
        self.thread_ids = list(thread_ids)
