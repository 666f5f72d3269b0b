"""What the parts of the session core need of each other, as protocols.

The contexts and resources need a session, a session needs its manager: naming these as
protocols here (rather than importing ``session.py`` and ``manager.py`` for their types)
keeps the imports one way: ``interfaces`` < ``contexts``, ``resources`` < ``session`` <
``manager``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # the layers below: no circle
    from pytest_mpsession.capabilities import DeviceCapabilities
    from pytest_mpsession.communicator import Reply

__all__ = ["ManagerLike", "SessionLike"]


class ManagerLike(Protocol):
    """What a session and its contexts need of the
    :class:`~pytest_mpsession.session.manager.DeviceSessionManager`."""

    session_id: str
    thread_stop_timeout: float

    @property
    def port(self) -> str | None:
        """The board's port."""
        ...

    @property
    def reset_count(self) -> int:
        """How many times the board's RAM was lost."""
        ...

    @property
    def capabilities(self) -> DeviceCapabilities:
        """The board's capabilities (detected on first use)."""
        ...

    @property
    def known_capabilities(self) -> DeviceCapabilities | None:
        """The capabilities if known, without probing."""
        ...

    @property
    def communicator(self) -> Any:
        """The communicator in use."""
        ...

    @property
    def sessions(self) -> list[Any]:
        """The open sessions."""
        ...

    def board(self, timeout: float | None = None) -> AbstractContextManager[Any]:
        """Hold the board for one or more exchanges."""
        ...

    def _exchange(
        self,
        code: str,
        timeout: float | None,
        parts: tuple[str, ...] = ("core",),
        *,
        key: int = 0,
        op: int = 0,
        session: Any = None,
    ) -> Reply:
        """One checked board call."""
        ...

    def uninstall(self, parts: tuple[str, ...], timeout: float | None = None) -> None:
        """Remove helper parts from the board."""
        ...

    def reset_board(self, policy: Any, timeout: float | None = None) -> None:
        """Soft or hard reset."""
        ...

    def _forget(self, session: Any) -> None:
        """A session ended."""
        ...

    def _emit(self, event: str, *args: object) -> None:
        """Tell the listeners of ``event``."""
        ...


class SessionLike(Protocol):
    """What the contexts and resources need of a
    :class:`~pytest_mpsession.session.session.DeviceSession`."""

    session_id: str
    _key: int

    @property
    def manager(self) -> ManagerLike:
        """The session's manager."""
        ...

    @property
    def closed(self) -> bool:
        """True once cleaned up."""
        ...

    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run code in the session's namespace."""
        ...

    def _exchange_raw(
        self, code: str, timeout: float | None = None, parts: tuple[str, ...] = ("core",)
    ) -> str:
        """Run helper code; what it printed."""
        ...

    def _call_helper(
        self, code: str, timeout: float | None = None, parts: tuple[str, ...] = ("core",)
    ) -> object:
        """Run helper code; its one result."""
        ...

    def _call_helper_pieces(
        self, code: str, timeout: float | None = None, parts: tuple[str, ...] = ("core",)
    ) -> list[object]:
        """Run helper code; its results."""
        ...


#: A host function, as ``session.call`` takes it.
HostFunction = Callable[..., object]
