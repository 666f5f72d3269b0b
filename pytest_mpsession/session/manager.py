"""The session manager: one board, its state machine, and the sessions sharing it.

Calls to the board are serialized by the communicator's lock; while one runs the manager is
BUSY (:class:`~pytest_mpsession.session.states.SessionState`). Every state change is checked
against the one transition table and announced to ``"state_changed"`` listeners; a listener
that raises is logged and never breaks the manager. Sessions are created on the host only;
the board learns of a session at its first call.

Faults of the board (:class:`~pytest_mpsession.errors.BoardFault`: it reset, hung, dropped
off the link, sent noise) are recovered from by the communicator before the call's error is
raised; the manager passes through RECOVERING and ends CONNECTED when the board came back,
ERROR (``last_error`` is the fault) when it did not. A board the communicator marked broken
fails every call at once (:class:`~pytest_mpsession.errors.BoardBrokenError`) until
:meth:`DeviceSessionManager.recover` succeeds.

A session whose board lost its RAM (a reset, by a fault or by a cleanup policy) keeps
working: its next call gets a fresh, empty namespace (the session helpers and deployed
functions are sent again). Nothing is hidden from the test by this: the call the reset
struck raised the fault, whose message says what happened to the board and that its RAM is
gone (``ram_lost``), and the pytest plugin gives every test a session of its own.
"""

from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pytest_mpsession.errors import (
    BoardBrokenError,
    BoardFault,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    MpSessionError,
    ProtocolError,
)
from pytest_mpsession.protocol.frame import GC_LINE
from pytest_mpsession.session.board import (
    PARTS,
    piece_guard,
    split_pieces,
    uninstall_code,
)
from pytest_mpsession.session.errors import ResourceCleanupError
from pytest_mpsession.session.session import CleanupPolicy, DeviceSession
from pytest_mpsession.session.states import SessionState, check_transition

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.communicator import Reply

__all__ = ["CommunicatorLike", "DeviceSessionManager"]

log = logging.getLogger("pytest_mpsession.session")

T = TypeVar("T")
_S = SessionState
EVENTS = ("state_changed", "capabilities_changed", "cleanup_escalated")


class CommunicatorLike(Protocol):
    """What the manager needs of a :class:`~pytest_mpsession.communicator.Communicator`."""

    port: str
    raw_paste: bool | None
    lock: Any  # a threading.RLock, held for a whole exchange
    reset_count: int
    broken: str | None  # why the board is unusable after a failed recovery, or None
    last_recovery: Any  # the RecoveryReport of the last recovery, or None

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run code on the board, return its stdout."""
        ...

    def install_code(self, code: str, timeout: float | None = None) -> None:
        """Run board code of the package's own once it arrived intact."""
        ...

    def eval(self, expr: str, timeout: float | None = None) -> object:
        """The value of ``expr`` on the board."""
        ...

    def run(
        self,
        code: str,
        *,
        key: int = 0,
        op: int = 0,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> Reply:
        """Run code checked in namespace ``key``; the board's exception is in the reply."""
        ...

    def interrupt(self, timeout: float | None = None) -> None:
        """Stop what runs; back at the raw-REPL prompt."""
        ...

    def soft_reset(self, timeout: float | None = None) -> None:
        """Soft reset, back in the raw REPL."""
        ...

    def hard_reset(self, timeout: float | None = None) -> None:
        """Hard reset, port reopened, back in the raw REPL."""
        ...

    def add_reset_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the board's RAM was lost."""
        ...

    def recover(self, timeout: float | None = None) -> Any:
        """Bring the board back, escalating (interrupt, soft reset, reset line, reopen)."""
        ...

    def close(self) -> None:
        """Close the port."""
        ...


class DeviceSessionManager:
    """Coordinates everything that touches one board, so sessions share it without sharing
    state.

    Build it with :meth:`connect` (opens the port), or from an open communicator, or empty
    and then :meth:`open` (so listeners added first see CONNECTING and CONNECTED)::

        with DeviceSessionManager.connect("/dev/ttyACM0") as manager:
            with manager.create_session() as session:
                session.exec("x = 1")

    ``capabilities`` (pre-known ones, e.g. from a cache) and ``probes`` (extra feature
    probes) feed :attr:`capabilities`, detected on first use otherwise.
    """

    #: seconds the "clean" cleanup waits on the board for a session's threads to stop
    thread_stop_timeout: float = 1.0

    def __init__(
        self,
        communicator: CommunicatorLike | None = None,
        *,
        probes: FeatureProbes | None = None,
        capabilities: DeviceCapabilities | None = None,
        cleanup_policy: CleanupPolicy | str = CleanupPolicy.CLEAN,
    ) -> None:
        #: this manager's id; session ids are ``"<manager id>-<n>"``
        self.session_id = uuid.uuid4().hex[:12]
        #: the default cleanup policy of new sessions
        self.default_cleanup_policy = CleanupPolicy.parse(cleanup_policy)
        #: the error behind the last move to ERROR, if any
        self.last_error: BaseException | None = None
        #: board exchanges made through this manager (for tests and benchmarks)
        self.exchange_count = 0
        self._comm: CommunicatorLike | None = None
        self._state = _S.DISCONNECTED
        self._state_lock = threading.Lock()
        self._listeners: dict[str, list[Callable[..., object]]] = {e: [] for e in EVENTS}
        self._sessions: dict[str, DeviceSession] = {}
        self._sessions_lock = threading.Lock()
        self._keys = itertools.count(1)
        self._installed: dict[str, int] = {}  # helper part -> reset_count it was sent at
        # a helper piece's guard -> its value on the board (see _board_has)
        self._guards: dict[str, bool] = {}
        self._busy_depth = 0  # nesting of board() in the thread holding the lock
        self._probes = probes
        self._caps = capabilities
        self._caps_lock = threading.Lock()
        self._port: str | None = None
        self._open_args: dict[str, float] = {}
        if capabilities is not None:
            capabilities.bind(self._detect, self._capabilities_changed)
        if communicator is not None:
            self._adopt(communicator)
            # Nobody can listen yet, so the DISCONNECTED -> CONNECTING -> CONNECTED steps of
            # construction are taken silently (still through the table).
            check_transition(_S.DISCONNECTED, _S.CONNECTING)
            check_transition(_S.CONNECTING, _S.CONNECTED)
            self._state = _S.CONNECTED

    # -- construction and connection -----------------------------------------------------------

    @classmethod
    def connect(
        cls,
        port: str,
        *,
        baudrate: int = 115200,
        timeout: float = 10.0,
        probes: FeatureProbes | None = None,
        capabilities: DeviceCapabilities | None = None,
    ) -> DeviceSessionManager:
        """Open ``port`` (a device path or pyserial URL, ``mpmock://...`` included) and
        return a connected manager; ``DeviceConnectionError`` naming the port otherwise."""
        manager = cls(probes=probes, capabilities=capabilities)
        manager.open(port, baudrate=baudrate, timeout=timeout)
        return manager

    def open(
        self, port: str | None = None, *, baudrate: int = 115200, timeout: float = 10.0
    ) -> None:
        """Open ``port`` (or the last one opened) and enter the raw REPL:
        DISCONNECTED/ERROR -> CONNECTING -> CONNECTED (or ERROR, and the error raised)."""
        from pytest_mpsession.communicator import Communicator

        if port is None:
            if self._port is None:
                raise ValueError("open() needs a port the first time (a device path or URL)")
            port = self._port
            baudrate = int(self._open_args.get("baudrate", baudrate))
            timeout = self._open_args.get("timeout", timeout)
        self._set_state(_S.CONNECTING)
        self._port = port
        try:
            comm = Communicator.open(port, baudrate=baudrate, timeout=timeout)
        except BaseException as exc:
            self.last_error = exc
            self._set_state(_S.ERROR)
            raise
        self._port = port
        self._open_args = {"baudrate": baudrate, "timeout": timeout}
        self._adopt(comm)
        self._set_state(_S.CONNECTED)

    def _adopt(self, communicator: CommunicatorLike) -> None:
        self._comm = communicator
        self._port = communicator.port
        self._installed.clear()
        communicator.add_reset_listener(self._board_was_reset)

    @property
    def communicator(self) -> CommunicatorLike:
        """The communicator in use (``DeviceConnectionError`` when not connected)."""
        comm = self._comm
        if comm is None:
            raise DeviceConnectionError(
                f"the session manager is {self._state.value}, not connected to a board; "
                "call open(port) or DeviceSessionManager.connect(port)",
                port=self._port,
            )
        return comm

    @property
    def port(self) -> str | None:
        """The port of the board (None before the first open)."""
        return self._port

    @property
    def reset_count(self) -> int:
        """How many times the board's RAM was lost (the communicator's count; 0 when not
        connected)."""
        comm = self._comm
        return comm.reset_count if comm is not None else 0

    # -- state machine -------------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        """The manager's current :class:`SessionState`."""
        return self._state

    def add_listener(self, event: str, callback: Callable[..., object]) -> None:
        """Call ``callback`` on ``event``: ``"state_changed"`` with ``(old, new)``,
        ``"capabilities_changed"`` with ``(capabilities)``, ``"cleanup_escalated"`` with
        ``(session, reason)`` when a clean cleanup had to soft reset the board. Callbacks
        run in the thread that made the change, possibly while the board is held: keep
        them short, never call the board from them. An exception in one is logged and ignored."""
        if event not in self._listeners:
            raise ValueError(f"unknown event {event!r}: use one of {', '.join(EVENTS)}")
        if not callable(callback):
            raise TypeError(f"listener for {event!r} must be callable, not {callback!r}")
        self._listeners[event].append(callback)

    def remove_listener(self, event: str, callback: Callable[..., object]) -> None:
        """Stop calling ``callback`` on ``event`` (no error when it was not registered)."""
        try:
            self._listeners[event].remove(callback)
        except (KeyError, ValueError):
            pass

    def _emit(self, event: str, *args: object) -> None:
        for callback in list(self._listeners[event]):
            try:
                callback(*args)
            except Exception:
                log.exception("listener %r for %s raised; ignored", callback, event)

    def _set_state(self, new: SessionState) -> None:
        with self._state_lock:
            old = self._state
            check_transition(old, new)
            self._state = new
        log.debug("manager %s: %s -> %s", self.session_id, old.value, new.value)
        self._emit("state_changed", old, new)

    # -- holding the board ---------------------------------------------------------------------

    def _check_usable(self) -> None:
        state = self._state
        broken = self._broken()
        if broken is not None and state in (_S.CONNECTED, _S.ERROR):
            # every call would fail at once anyway: say why, and what to do
            err = BoardBrokenError(
                f"the board at {self._port} is broken ({broken}); power-cycle or replug it, "
                "then call manager.recover()",
                port=self._port,
            )
            err.fault = "broken"
            err.recovery = self.communicator.last_recovery
            raise err
        if state in (_S.CONNECTED, _S.BUSY):
            return
        if state is _S.ERROR:
            raise DeviceConnectionError(
                f"the session manager is in the error state, the board at {self._port} is "
                f"unusable ({self.last_error}); call manager.recover() or open() again",
                port=self._port,
            )
        if state is _S.CLOSED:
            raise DeviceConnectionError(
                "the session manager is closed; connect a new one", port=self._port
            )
        raise DeviceConnectionError(
            f"the session manager is {state.value}, not connected; call open()", port=self._port
        )

    def _broken(self) -> str | None:
        """Why the communicator says the board is unusable (None: it does not)."""
        comm = self._comm
        return (comm.broken or None) if comm is not None else None

    @property
    def broken(self) -> str | None:
        """Why the board is unusable (a recovery failed), or None: the communicator's
        ``broken``, else the last error when the manager is in the ERROR state."""
        reason = self._broken()
        if reason is None and self._state is _S.ERROR and self.last_error is not None:
            reason = " ".join(str(self.last_error).split()) or type(self.last_error).__name__
        return reason

    @contextmanager
    def board(self, timeout: float | None = None) -> Iterator[CommunicatorLike]:
        """Hold the board for one or more exchanges: the communicator lock is held (no
        other thread's bytes interleave) and the state is BUSY. Re-entrant in one thread.

        A fault of the board inside (a :class:`~pytest_mpsession.errors.BoardFault`, which
        the communicator already recovered from, or not) moves to RECOVERING, then to
        CONNECTED when the board came back, ERROR (``last_error``) when it did not. Another
        broken link (``DeviceConnectionError``/``ProtocolError``) moves to RECOVERING and
        the board is recovered here (:meth:`recover`'s escalation). The original error is
        raised either way."""
        comm = self.communicator
        with comm.lock:
            if self._busy_depth == 0:
                self._check_usable()
                self._set_state(_S.BUSY)
            self._busy_depth += 1
            try:
                yield comm
            except (DeviceConnectionError, ProtocolError, DeviceTimeout) as exc:
                if self._busy_depth == 1 and self._state is _S.BUSY:
                    if isinstance(exc, BoardFault):
                        self._after_fault(exc, exc)
                    elif not isinstance(exc, DeviceTimeout):
                        # a plain timeout was interrupted and the board is usable again
                        self._recover_from(exc)
                raise
            finally:
                self._busy_depth -= 1
                if self._busy_depth == 0 and self._state is _S.BUSY:
                    self._set_state(_S.CONNECTED)

    def _after_fault(self, exc: BaseException, fault: BoardFault) -> None:
        # The communicator has already done the recovery (escalating as far as needed):
        # doing it again would only double the time a dead board costs.
        self._set_state(_S.RECOVERING)
        if fault.recovered:
            self._set_state(_S.CONNECTED)
            return
        self.last_error = exc
        log.error("board at %s did not recover: %s", self._port, exc)
        self._set_state(_S.ERROR)

    def _recover_from(self, exc: BaseException) -> None:
        self._set_state(_S.RECOVERING)
        try:
            # the communicator's own recovery time, not the (maybe tiny) call timeout
            self._run_recovery(None)
        except Exception as failure:
            self.last_error = failure
            log.error("board at %s did not recover after %s: %s", self._port, exc, failure)
            self._set_state(_S.ERROR)
            return
        self._set_state(_S.CONNECTED)

    def _run_recovery(self, timeout: float | None) -> None:
        # interrupt, soft reset, reset line, reopen: one escalation, in the communicator
        self.communicator.recover(timeout)

    def recover(self, timeout: float | None = None) -> None:
        """Bring the board back after a failure or an interrupted test, escalating
        (interrupt, soft reset, reset line, reopening the port; ``timeout`` for all of it,
        default the communicator's recovery time): CONNECTED/ERROR -> RECOVERING ->
        CONNECTED, or ERROR and the failure raised
        (:class:`~pytest_mpsession.errors.BoardBrokenError` when nothing brought it back)."""
        comm = self.communicator
        with comm.lock:
            self._set_state(_S.RECOVERING)
            try:
                self._run_recovery(timeout)
            except BaseException as exc:
                self.last_error = exc
                self._set_state(_S.ERROR)
                raise
            self.last_error = None
            self._set_state(_S.CONNECTED)

    def _exchange(
        self,
        code: str,
        timeout: float | None,
        parts: tuple[str, ...] = ("core",),
        *,
        key: int = 0,
        op: int = 0,
        session: DeviceSession | None = None,
    ) -> Reply:
        """One checked board call running ``code`` in namespace ``key`` (0: the board's
        ``__main__``, where the helpers live), after installing the helper ``parts`` the
        board lacks since its last reset (see ``board.py``)."""
        with self.board(timeout) as comm:
            self._install(comm, ("core", *parts), timeout)
            if session is not None:
                session._ns_epoch = comm.reset_count
            self.exchange_count += 1
            return comm.run(code, key=key, op=op, timeout=timeout)

    def _install(
        self, comm: CommunicatorLike, parts: tuple[str, ...], timeout: float | None
    ) -> None:
        for part in dict.fromkeys(parts):  # ordered, without repeats
            epoch = comm.reset_count
            if self._installed.get(part) == epoch:
                continue
            try:
                for piece in PARTS[part]:
                    guard = piece_guard(piece)
                    if guard and not self._board_has(comm, guard, timeout):
                        continue  # never compiled where it is not needed (a small board)
                    self._install_piece(comm, piece, timeout)
            except MpSessionError as exc:
                if isinstance(exc, DeviceTimeout | DeviceConnectionError | ProtocolError):
                    raise
                if not isinstance(exc, DeviceError):
                    exc = DeviceError(
                        str(exc), exc_type="MemoryError" if "MemoryError" in str(exc) else ""
                    )
                hint = (
                    "; the board's free memory is too small for them"
                    if exc.exc_type == "MemoryError"
                    else "; the code arrived damaged or the firmware is not MicroPython 1.9+"
                )
                raise MpSessionError(
                    f"could not install the session helpers ({part}) on the board at "
                    f"{self._port}: {exc}{hint}"
                ) from exc
            if comm.reset_count == epoch:  # a reset meanwhile would have wiped it again
                self._installed[part] = epoch

    def _install_piece(self, comm: CommunicatorLike, piece: str, timeout: float | None) -> None:
        """One piece of helper source, checked on every board (it runs only when intact,
        see board.py). A piece of several definitions the board has no memory for (a small
        board's fragmented heap) goes again one definition per exchange."""
        self.exchange_count += 1
        try:
            comm.install_code(piece, timeout=timeout)
            return
        except MpSessionError as exc:
            if isinstance(exc, DeviceTimeout | DeviceConnectionError | ProtocolError):
                raise
            smaller = split_pieces(piece.removesuffix(GC_LINE), 1)
            if "MemoryError" not in str(exc) or len(smaller) < 2:
                raise
        log.debug("board short of memory for a helper piece: sent one definition at a time")
        for one in smaller:
            self.exchange_count += 1
            comm.install_code(one, timeout=timeout)

    def _board_has(self, comm: CommunicatorLike, guard: str, timeout: float | None) -> bool:
        """The value of a helper piece's guard on the board: what its firmware has, asked
        once (a reset does not change it)."""
        known = self._guards.get(guard)
        if known is None:
            known = bool(comm.eval(guard, timeout))
            self._guards[guard] = known
        return known

    def uninstall(self, parts: tuple[str, ...], timeout: float | None = None) -> None:
        """Remove helper ``parts`` from the board (one exchange) to give a small board their
        RAM back; they are sent again when next needed."""
        with self.board(timeout) as comm:
            present = tuple(p for p in parts if self._installed.get(p) == comm.reset_count)
            if not present:
                return
            # forgotten first: a fault that leaves unknown whether the removal ran (noise
            # instead of its reply) must not leave the manager believing they are there
            for part in present:
                self._installed.pop(part, None)
            self.exchange_count += 1
            comm.exec(uninstall_code(present), timeout=timeout)

    def _board_was_reset(self) -> None:
        # Called by the communicator (any thread) after the board lost its RAM.
        with self._sessions_lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session._board_reset()

    def reset_board(self, policy: CleanupPolicy | str, timeout: float | None = None) -> None:
        """Reset the board per ``policy`` (``"soft"`` or ``"hard"``), ending every session's
        board state; ``"clean"``/``"none"`` do nothing here (they are per session)."""
        chosen = CleanupPolicy.parse(policy)
        if chosen not in (CleanupPolicy.SOFT, CleanupPolicy.HARD):
            return
        with self.board(timeout) as comm:
            if chosen is CleanupPolicy.SOFT:
                comm.soft_reset(timeout)
            else:
                comm.hard_reset(timeout)
            self.exchange_count += 1
            self._installed.clear()

    # -- capabilities --------------------------------------------------------------------------

    @property
    def capabilities(self) -> DeviceCapabilities:
        """The board's :class:`~pytest_mpsession.DeviceCapabilities`: the ones given to the
        constructor, or detected on first use (one exchange). ``refresh_capabilities()`` on
        them probes again and emits ``"capabilities_changed"`` when anything differs."""
        with self._caps_lock:
            if self._caps is None:
                caps = self._detect(None)
                caps.bind(self._detect, self._capabilities_changed)
                self._caps = caps
            return self._caps

    @property
    def known_capabilities(self) -> DeviceCapabilities | None:
        """The capabilities if already given or detected, without probing the board."""
        return self._caps

    def _detect(self, timeout: float | None) -> DeviceCapabilities:
        from pytest_mpsession.capabilities import detect

        with self.board(timeout) as comm:
            self.exchange_count += 1
            return detect(comm, self._probes, timeout)

    def _capabilities_changed(self, caps: DeviceCapabilities) -> None:
        self._emit("capabilities_changed", caps)

    # -- sessions ------------------------------------------------------------------------------

    def create_session(self, timeout: float | None = None) -> DeviceSession:
        """A new session with its own namespace on the board and its own host state.

        Host-side only (the board meets the session at its first call), so it never blocks;
        ``timeout`` becomes the default timeout of the session's board calls."""
        self._check_usable()
        key = next(self._keys)
        session = DeviceSession(
            self, key, timeout=timeout, cleanup_policy=self.default_cleanup_policy
        )
        with self._sessions_lock:
            self._sessions[session.session_id] = session
        return session

    @property
    def sessions(self) -> list[DeviceSession]:
        """The sessions not yet cleaned up, oldest first."""
        with self._sessions_lock:
            return list(self._sessions.values())

    def _forget(self, session: DeviceSession) -> None:
        with self._sessions_lock:
            self._sessions.pop(session.session_id, None)

    def execute_in_session(
        self, operation: Callable[[DeviceSession], T], timeout: float | None = None
    ) -> T:
        """``operation(session)`` in a fresh session, which is cleaned up afterwards even
        when the operation raises (a cleanup failure is then chained to that error)."""
        session = self.create_session(timeout)
        try:
            result = operation(session)
        except BaseException:
            try:
                session.cleanup()
            except ResourceCleanupError as cleanup_error:
                log.error("%s", cleanup_error)
            raise
        session.cleanup()
        return result

    def terminate_session(self, timeout: float | None = None) -> None:
        """Clean up every open session, then disconnect (-> DISCONNECTED); ``open()``
        connects again. Cleanup failures are raised together afterwards."""
        errors: list[BaseException] = []
        for session in self.sessions:
            try:
                session.cleanup(
                    policy=None if self._state in (_S.CONNECTED, _S.BUSY) else "none",
                    timeout=timeout,
                )
            except ResourceCleanupError as exc:
                errors.extend(exc.errors)
        comm = self._comm
        if comm is not None:
            with comm.lock:
                try:
                    comm.close()
                except Exception as exc:  # closing must not keep us from DISCONNECTED
                    errors.append(exc)
                self._comm = None
        if self._state in (_S.CONNECTED, _S.ERROR):
            self._set_state(_S.DISCONNECTED)
        if errors:
            raise ResourceCleanupError(f"manager {self.session_id}", errors)

    def close(self) -> None:
        """Terminate every session, disconnect and close for good (-> CLOSED). Idempotent."""
        if self._state is _S.CLOSED:
            return
        try:
            self.terminate_session()
        finally:
            if self.state is not _S.CLOSED:
                self._set_state(_S.CLOSED)

    def __enter__(self) -> DeviceSessionManager:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<DeviceSessionManager {self.session_id} {self._state.value} port={self._port}>"
