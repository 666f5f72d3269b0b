"""One session on a board: its own namespace there, its own host state, its resources.

A :class:`DeviceSession` is cheap to create: nothing is sent to the board until its first
call, whose exchange creates the session's namespace on the board as a side effect. Cleanup
(:meth:`DeviceSession.cleanup`) tears everything down in a fixed order, never stopping at the
first failure:

1. resources, newest first (they may still need the board);
2. the board, per the cleanup policy (:class:`CleanupPolicy`);
3. the host state;

then raises every failure together in one
:class:`~pytest_mpsession.session.errors.ResourceCleanupError`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta, timezone
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING

from pytest_mpsession.errors import (
    BoardFault,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    MpSessionError,
    OutputLimitError,
    ProtocolError,
)
from pytest_mpsession.protocol.frame import OP_EVAL, OP_HELPER
from pytest_mpsession.protocol.replies import parse_literal, parse_traceback
from pytest_mpsession.session.board import cleanup_code
from pytest_mpsession.session.contexts import (
    DeviceContext,
    ExecutorContext,
    FileSystemContext,
    _parse,
)
from pytest_mpsession.session.errors import BackgroundThreadError, ResourceCleanupError
from pytest_mpsession.session.interfaces import ManagerLike
from pytest_mpsession.session.resources import (
    ResourceState,
    SessionResource,
    describe_id,
)
from pytest_mpsession.session.tracebacks import clean_traceback

if TYPE_CHECKING:
    from pytest_mpsession.communicator import Reply

__all__ = ["CleanupPolicy", "DeviceSession"]

log = logging.getLogger("pytest_mpsession.session")


class CleanupPolicy(str, Enum):
    """What a session's cleanup does to the board.

    - ``clean`` (default): one round trip that asks the session's background threads to stop
      (waiting at most ``manager.thread_stop_timeout``), drops the session's namespace and
      runs ``gc.collect()``: the board's free memory returns to its baseline. Other sessions
      are untouched. A session that never reached the board costs no round trip.
    - ``soft``: a soft reset (the board's RAM is emptied, and the communicator is back in
      the raw REPL). This ends *every* session's namespace and threads on the board.
    - ``hard``: a hard reset (reset line or ``machine.reset()``, waiting for the port to come
      back). Also ends every session's board state.
    - ``none``: leave the board as it is (namespace and threads stay).
    """

    CLEAN = "clean"
    SOFT = "soft"
    HARD = "hard"
    NONE = "none"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: CleanupPolicy | str) -> CleanupPolicy:
        """``value`` as a policy; ``ValueError`` listing the valid ones otherwise."""
        try:
            return cls(value)
        except ValueError:
            valid = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown cleanup policy {value!r}: use one of {valid}") from None


_ALL = object()  # clear_state() without a key: clear everything
#: a clean cleanup that leaves less than this share of the baseline free memory escalates
MEMORY_FLOOR = 0.5


class DeviceSession:
    """A session on the board: its own namespace there, its own host state, its resources.

    Made by :meth:`DeviceSessionManager.create_session`; a context manager whose exit (and
    :meth:`close`) is :meth:`cleanup`. Safe to use from several threads: board calls are
    serialized by the manager, host state is behind a lock.
    """

    def __init__(
        self,
        manager: ManagerLike,
        key: int,
        *,
        timeout: float | None = None,
        cleanup_policy: CleanupPolicy | str = CleanupPolicy.CLEAN,
    ) -> None:
        self.manager = manager
        self._key = key  # the board-side key of the namespace: an int (see board.py)
        self.session_id = f"{manager.session_id}-{key}"
        self.created_at = datetime.now(timezone.utc)
        self._t0 = time.monotonic()
        self._t1: float | None = None
        #: default timeout of this session's board calls (None: the communicator's)
        self.timeout = timeout
        #: what cleanup() does to the board unless told otherwise
        self.cleanup_policy = CleanupPolicy.parse(cleanup_policy)
        #: free memory the board reported after this session's last "clean" cleanup
        self.board_mem_free: int | None = None
        #: why the "clean" cleanup had to escalate to a soft reset (None: it did not)
        self.cleanup_escalation: str | None = None
        self._lock = threading.RLock()
        self._state: dict[Hashable, object] = {}
        self._resources: list[SessionResource] = []
        self._ns_epoch: int | None = None  # reset_count when the namespace was last used
        self._closing = False
        self._closed = False
        self.context = DeviceContext(self)
        self.executor = ExecutorContext(self)
        self.fs = FileSystemContext(self)

    # -- identity ------------------------------------------------------------------------------

    @property
    def duration(self) -> timedelta:
        """How long the session has lived (until its cleanup, once cleaned up)."""
        end = self._t1 if self._t1 is not None else time.monotonic()
        return timedelta(seconds=end - self._t0)

    @property
    def closed(self) -> bool:
        """True once :meth:`cleanup` has run."""
        return self._closed

    def __repr__(self) -> str:
        status = "closed" if self._closed else "open"
        return f"<DeviceSession {self.session_id} {status}>"

    # -- board calls ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MpSessionError(
                f"session {self.session_id} is cleaned up; create a new one with "
                "manager.create_session()"
            )

    def _reply(
        self,
        code: str,
        timeout: float | None = None,
        parts: tuple[str, ...] = ("core",),
        *,
        key: int = 0,
        op: int = 0,
    ) -> Reply:
        """One checked call for this session; the board's exception is raised as a
        DeviceError with its traceback cleaned (plugin frames dropped, deployed functions
        mapped to the host) and ``output``, what was printed before it."""
        self._check_open()
        if timeout is None:
            timeout = self.timeout
        reply = self.manager._exchange(code, timeout, parts, key=key, op=op, session=self)
        if reply.status == "e":
            raise self._error(reply)
        return reply

    def _error(self, reply: Reply) -> DeviceError:
        text = reply.traceback.decode("utf-8", "replace").replace("\r\n", "\n")
        log.debug("board traceback of session %s:\n%s", self.session_id, text)
        exc_type, message = parse_traceback(text)
        return DeviceError(
            message,
            exc_type=exc_type,
            traceback=clean_traceback(text, self.executor.host_sources()),
            port=self.manager.port,
            output=reply.output.decode("utf-8", "surrogateescape"),
        )

    def _exchange_raw(
        self, code: str, timeout: float | None = None, parts: tuple[str, ...] = ("core",)
    ) -> str:
        """Run helper code in the board's ``__main__``; returns what it printed."""
        return self._reply(code, timeout, parts).output.decode("utf-8", "surrogateescape")

    def _call_helper(
        self, code: str, timeout: float | None = None, parts: tuple[str, ...] = ("core",)
    ) -> object:
        """Run ``code`` (which ends by printing a result with ``_mps_r``) and return the
        value. What the code printed before the result is logged at debug level."""
        reply = self._reply(code, timeout, parts)
        if not reply.records:
            raise MpSessionError(
                f"the board sent no result for {code[:60]!r}: {reply.output[:200]!r}"
            )
        if reply.output:
            log.debug("session %s output: %r", self.session_id, reply.output)
        return _parse(reply.records[-1].decode("utf-8", "surrogateescape"))

    def _call_helper_pieces(
        self, code: str, timeout: float | None = None, parts: tuple[str, ...] = ("core",)
    ) -> list[object]:
        """Like :meth:`_call_helper` for code that prints one result record per piece."""
        reply = self._reply(code, timeout, parts)
        if reply.output:
            log.debug("session %s output: %r", self.session_id, reply.output)
        return [_parse(r.decode("utf-8", "surrogateescape")) for r in reply.records]

    def exec(self, code: str, timeout: float | None = None) -> str:
        """Run ``code`` in the session's namespace on the board; returns exactly what it
        printed (see "What exec returns" in the API: UTF-8 with ``surrogateescape``, line
        endings as sent). ``SystemExit`` ends the code without a reset.

        Raises :class:`~pytest_mpsession.DeviceError` when the code raises (its
        ``traceback`` has the line numbers of ``code`` as written, ``output`` what was
        printed before); ``ValueError`` for a timeout that is not above 0."""
        if not isinstance(code, str):
            raise TypeError(f"exec needs the code as a str, not {type(code).__name__}")
        reply = self._reply(code, timeout, key=self._key)
        output = reply.output.decode("utf-8", "surrogateescape")
        if reply.dropped:
            raise OutputLimitError(
                f"session {self.session_id}: the code printed more than the "
                f"{self.manager.communicator.output_limit:,} bytes kept "
                f"({reply.dropped:,} dropped from the middle)",
                output=output,
                dropped=reply.dropped,
            )
        return output

    def eval(self, expr: str, timeout: float | None = None) -> object:
        """The value of expression ``expr`` in the session's namespace on the board, as a
        Python value (literals, lists, dicts, bytes, ...). ProtocolError when the value has
        no literal form (return a literal, or use exec and print what you need)."""
        if not isinstance(expr, str):
            raise TypeError(f"eval needs the expression as a str, not {type(expr).__name__}")
        reply = self._reply(expr, timeout, key=self._key, op=OP_EVAL)
        if reply.status != "." or not reply.records:
            raise DeviceError("SystemExit", exc_type="SystemExit", port=self.manager.port)
        text = reply.records[-1].decode("utf-8", "surrogateescape")
        try:
            return parse_literal(text)
        except ValueError:
            raise ProtocolError(
                f"eval({expr!r}): the board's value {text[:80]!r} is not a literal (numbers, "
                "str, bytes, bytearray, lists, tuples, dicts, sets, None, bools); return one "
                "of those, or use exec() and print what you need"
            ) from None

    def call(
        self,
        func: Callable[..., object],
        *args: object,
        timeout: float | None = None,
        **kwargs: object,
    ) -> object:
        """Run host function ``func`` on the board with ``args``/``kwargs`` (literal values)
        and return its value.

        The function's source is deployed in the session's namespace on the first call and
        cached (by a hash of its source) until it changes or the board resets; later calls
        send only the call. An exception in it raises a ``DeviceError`` whose traceback
        points at the host file and line of the function."""
        self._check_open()
        return self.executor.call(func, *args, timeout=timeout, **kwargs)

    # -- host state ----------------------------------------------------------------------------

    def get_state(self, key: Hashable, default: object = None) -> object:
        """The host-side value stored under ``key``, or ``default``."""
        with self._lock:
            return self._state.get(key, default)

    def set_state(self, key: Hashable, value: object) -> None:
        """Store ``value`` under ``key`` on the host (never sent to the board)."""
        with self._lock:
            self._state[key] = value

    def clear_state(self, key: Hashable = _ALL) -> None:
        """Remove ``key`` from the host state (no error when absent); with no key, clear
        all of it."""
        with self._lock:
            if key is _ALL:
                self._state.clear()
            else:
                self._state.pop(key, None)

    # -- resources -----------------------------------------------------------------------------

    def register_resource(self, resource: SessionResource) -> None:
        """Initialize ``resource`` now and clean it up at the end of the session.

        When ``initialize`` raises, the resource is not registered (its state is FAILED) and
        the error propagates."""
        if not isinstance(resource, SessionResource):
            raise TypeError(
                f"register_resource needs a SessionResource, not {type(resource).__name__}"
            )
        with self._lock:
            self._check_open()
            if self._closing:
                raise MpSessionError(f"session {self.session_id} is being cleaned up")
            if any(r is resource for r in self._resources):
                raise ValueError(f"resource {describe_id(resource)} is already registered")
        resource.state = ResourceState.INITIALIZING
        try:
            resource.initialize(self)
        except BaseException:
            resource.state = ResourceState.FAILED
            raise
        resource.state = ResourceState.ACTIVE
        with self._lock:
            self._resources.append(resource)

    def get_active_resources(self) -> list[SessionResource]:
        """The registered resources not yet cleaned up, oldest first."""
        with self._lock:
            return [r for r in self._resources if r.state is ResourceState.ACTIVE]

    # -- cleanup -------------------------------------------------------------------------------

    def cleanup(
        self, policy: CleanupPolicy | str | None = None, timeout: float | None = None
    ) -> None:
        """End the session (idempotent: later calls do nothing).

        Resources are cleaned newest first, then the board per ``policy`` (default: the
        session's ``cleanup_policy``), then the host state. Each failure is logged and does
        not stop the rest; all are raised together afterwards as
        :class:`~pytest_mpsession.session.errors.ResourceCleanupError` (with a
        :class:`~pytest_mpsession.session.errors.BackgroundThreadError` among them for
        threads that did not stop)."""
        chosen = self.cleanup_policy if policy is None else CleanupPolicy.parse(policy)
        with self._lock:
            if self._closing or self._closed:
                return
            self._closing = True
            resources = list(self._resources)
        errors: list[BaseException] = []
        for resource in reversed(resources):
            if resource.state is not ResourceState.ACTIVE:
                continue
            resource.state = ResourceState.CLEANING_UP
            try:
                resource.cleanup(self)
            except Exception as exc:
                resource.state = ResourceState.FAILED
                log.error(
                    "session %s: cleanup of resource %s failed: %s",
                    self.session_id,
                    describe_id(resource),
                    exc,
                    exc_info=True,
                )
                errors.append(exc)
            else:
                resource.state = ResourceState.CLEANED_UP
        try:
            self._board_cleanup(chosen, timeout if timeout is not None else self.timeout)
        except Exception as exc:
            log.error("session %s: board cleanup (%s) failed: %s", self.session_id, chosen, exc)
            errors.append(exc)
        with self._lock:
            self._state.clear()
            self._resources.clear()
            self._closed = True
            self._t1 = time.monotonic()
        self.manager._forget(self)
        if errors:
            raise ResourceCleanupError(self.session_id, errors)

    def _board_cleanup(self, policy: CleanupPolicy, timeout: float | None) -> None:
        manager = self.manager
        if policy is CleanupPolicy.NONE:
            return
        if policy is not CleanupPolicy.CLEAN:
            manager.reset_board(policy, timeout)
            return
        if self._ns_epoch is None or self._ns_epoch != manager.reset_count:
            return  # never reached the board, or a reset already emptied it
        ms = int(manager.thread_stop_timeout * 1000)
        code = cleanup_code(self._key, ms)
        try:
            try:
                reply = manager._exchange(code, timeout, ("core",), key=self._key, op=OP_HELPER)
            except (DeviceConnectionError, ProtocolError, DeviceTimeout) as exc:
                if not (isinstance(exc, BoardFault) and exc.recovered):
                    raise
                # The board failed during the cleanup and is back: with its RAM gone, so is
                # everything the cleanup was to remove; otherwise the cleanup runs again.
                if self._ns_epoch != manager.reset_count:
                    self._ns_epoch = None
                    return
                reply = manager._exchange(code, timeout, ("core",), key=self._key, op=OP_HELPER)
        except DeviceError as exc:
            if isinstance(exc, DeviceTimeout):
                raise
            self._escalate(f"the cleanup could not run on the board ({exc})", timeout)
            return
        if reply.status != "." or not reply.records:
            text = reply.traceback.decode("utf-8", "replace").strip().splitlines()
            self._escalate(
                f"the cleanup could not run on the board ({text[-1] if text else 'no result'})",
                timeout,
            )
            return
        value = _parse(reply.records[-1].decode("utf-8", "surrogateescape"))
        assert isinstance(value, tuple)
        stuck, failed, mem_free, *rest = value
        base_free = rest[0] if rest else 0
        unrestored = rest[1] if len(rest) > 1 else []
        rescheduling = bool(rest[2]) if len(rest) > 2 else False
        self.board_mem_free = int(mem_free)
        self._ns_epoch = None
        stuck_ids = self.executor._after_cleanup(list(stuck), dict(failed))
        reasons = []
        if unrestored:
            reasons.append(f"built-in names replaced and not restorable: {', '.join(unrestored)}")
        if int(base_free) > 0 and int(mem_free) < int(base_free) * MEMORY_FLOOR:
            reasons.append(
                f"free memory {int(mem_free):,} bytes, far below its baseline of {int(base_free):,}"
            )
        if stuck_ids:
            reasons.append(f"background thread(s) {stuck_ids} did not stop")
        if rescheduling:
            reasons.append(
                "a callback left with micropython.schedule keeps scheduling itself again "
                "(still pending after the cleanup ran the queue dry several times)"
            )
        if reasons:
            self._escalate("; ".join(reasons), timeout)
        if stuck_ids:
            raise BackgroundThreadError(
                f"session {self.session_id}: background thread(s) {stuck_ids} did not stop "
                f"within {manager.thread_stop_timeout} s (they must return when "
                "mps_should_stop() is true); they keep running until the board is reset"
                + (" (it was soft reset)" if self.cleanup_escalation else ""),
                thread_ids=stuck_ids,
            )

    def _escalate(self, reason: str, timeout: float | None) -> None:
        """The clean cleanup could not bring the board back to its baseline: soft reset it
        (unless another session still has state on it), and say so: the reason is kept in
        :attr:`cleanup_escalation` and announced to the manager's ``"cleanup_escalated"``
        listeners (the plugin reports it as a warning, not as a failure of the test)."""
        manager = self.manager
        others = [s for s in manager.sessions if s is not self and s._ns_epoch is not None]
        if others:
            self.cleanup_escalation = f"{reason}; not reset: other sessions hold board state"
        else:
            manager.reset_board(CleanupPolicy.SOFT, timeout)
            self.cleanup_escalation = f"{reason}; the board was soft reset"
        self._ns_epoch = None
        log.warning("session %s: %s", self.session_id, self.cleanup_escalation)
        manager._emit("cleanup_escalated", self, self.cleanup_escalation)

    def _board_reset(self) -> None:
        """Called by the manager after a reset emptied the board's RAM."""
        self._ns_epoch = None
        self.executor._forget_board()

    def close(self) -> None:
        """Same as :meth:`cleanup`."""
        self.cleanup()

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
