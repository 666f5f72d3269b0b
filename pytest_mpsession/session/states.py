"""The session manager's states and the one table of transitions allowed between them.

The manager's life::

    DISCONNECTED --open--> CONNECTING --ok--> CONNECTED <--> BUSY (a board call runs)
                                  \\--fail--> ERROR              |
    CONNECTED/BUSY --link failed--> RECOVERING --ok--> CONNECTED
                                        \\--fail--> ERROR --recover()--> RECOVERING
    CONNECTED/ERROR --terminate_session()--> DISCONNECTED --open()--> CONNECTING ...
    any state but BUSY/CONNECTING/RECOVERING --close()--> CLOSED (final)

Every state change goes through :func:`check_transition`; a change the table does not allow is
a bug in the manager, never a user error, so it raises :class:`StateTransitionError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType

from pytest_mpsession.session.errors import StateTransitionError

__all__ = ["TRANSITIONS", "SessionState", "check_transition"]


class SessionState(str, Enum):
    """Where a :class:`~pytest_mpsession.session.manager.DeviceSessionManager` stands.

    A ``str`` enum, so ``state == "busy"`` works and the value prints readably in reports.
    """

    DISCONNECTED = "disconnected"  #: no link to the board (not opened yet, or terminated)
    CONNECTING = "connecting"  #: the port is being opened and the raw REPL entered
    CONNECTED = "connected"  #: idle and ready for board calls
    BUSY = "busy"  #: a board call runs (calls are serialized, so at most one at a time)
    RECOVERING = "recovering"  #: the link failed during a call; interrupting/resetting the board
    ERROR = "error"  #: recovery failed, or the port could not be opened; see ``last_error``
    CLOSED = "closed"  #: closed for good; a new manager is needed

    def __str__(self) -> str:
        return self.value


_S = SessionState

#: The one table of allowed transitions: ``TRANSITIONS[old]`` is the set of states ``old``
#: may change to. Nothing else in the package decides whether a state change is legal.
TRANSITIONS: Mapping[SessionState, frozenset[SessionState]] = MappingProxyType(
    {
        _S.DISCONNECTED: frozenset({_S.CONNECTING, _S.CLOSED}),
        _S.CONNECTING: frozenset({_S.CONNECTED, _S.ERROR}),
        _S.CONNECTED: frozenset({_S.BUSY, _S.RECOVERING, _S.DISCONNECTED, _S.CLOSED}),
        _S.BUSY: frozenset({_S.CONNECTED, _S.RECOVERING, _S.ERROR}),
        _S.RECOVERING: frozenset({_S.CONNECTED, _S.ERROR}),
        _S.ERROR: frozenset({_S.RECOVERING, _S.CONNECTING, _S.DISCONNECTED, _S.CLOSED}),
        _S.CLOSED: frozenset(),
    }
)


def check_transition(old: SessionState, new: SessionState) -> None:
    """Raise :class:`StateTransitionError` unless ``TRANSITIONS`` allows ``old -> new``."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[old])) or "nothing (final)"
        raise StateTransitionError(
            f"forbidden session-manager transition {old.value} -> {new.value} "
            f"(from {old.value} only: {allowed}); this is a bug in pytest-mpsession"
        )
