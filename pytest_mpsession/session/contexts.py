"""The three views of a session: the device, the executor (deployed functions, background
threads) and the board's filesystem.

Each context belongs to one :class:`~pytest_mpsession.session.session.DeviceSession` and
talks to the board only through it, so every call is serialized with the board's other
traffic and refused once the session is cleaned up.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from types import MappingProxyType

from pytest_mpsession.errors import DeviceError, DeviceTimeout, MpSessionError
from pytest_mpsession.protocol.replies import parse_literal
from pytest_mpsession.session.deploy import MethodDeploymentInfo, Prepared, prepare
from pytest_mpsession.session.interfaces import SessionLike
from pytest_mpsession.session.literals import to_board_literal
from pytest_mpsession.session.tracebacks import HostSource

__all__ = [
    "BackgroundThread",
    "DeviceContext",
    "ExecutorContext",
    "FileInfo",
    "FileSystemContext",
    "MethodDeploymentInfo",
    "RemoteObject",
]

log = logging.getLogger("pytest_mpsession.session")

#: Names the session core itself puts in a namespace; hidden from ``global_variables``.
_INTERNAL_NAMES = frozenset({"mps_should_stop", "__name__"})


@dataclass(frozen=True)
class RemoteObject:
    """A board value that has no literal form (a function, a module, a Pin): its board
    ``repr`` text stands for it in :attr:`DeviceContext.global_variables`."""

    repr_text: str

    def __repr__(self) -> str:
        return f"RemoteObject({self.repr_text})"


def _parse(text: str | bytes) -> object:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    return parse_literal(text)


# ---------------------------------------------------------------------------------------------
# DeviceContext
# ---------------------------------------------------------------------------------------------


class DeviceContext:
    """The board as this session sees it: what it is, and the session's names on it."""

    def __init__(self, session: SessionLike) -> None:
        self._session = session

    @property
    def device_info(self) -> Mapping[str, object]:
        """What the board is (read-only): ``implementation``, ``firmware_version``,
        ``version``, ``device_type``, ``machine``, ``unique_id``, ``memory_free``, ``port``.

        Taken from the manager's capabilities (detected on first use, then cached)."""
        caps = self._session.manager.capabilities
        return MappingProxyType(
            {
                "implementation": caps.implementation,
                "firmware_version": caps.firmware_version,
                "version": caps.version,
                "device_type": caps.device_type,
                "machine": caps.machine,
                "unique_id": caps.unique_id,
                "memory_free": caps.memory_free,
                "port": self._session.manager.port,
            }
        )

    @property
    def global_variables(self) -> Mapping[str, object]:
        """A read-only snapshot of the names the session defined on the board (one round
        trip): literal values as Python values, anything else as a :class:`RemoteObject`."""
        pairs = self._session._call_helper_pieces(
            f"_mps_v({self._session._key})", parts=("context",)
        )
        result: dict[str, object] = {}
        for pair in pairs:
            key, value = _pair(pair)
            name, text = str(key), str(value)
            if name in _INTERNAL_NAMES:
                continue
            try:
                result[name] = _parse(text)
            except Exception:
                # Not a literal (function, module, object): keep its repr.
                result[name] = RemoteObject(text)
        return MappingProxyType(result)

    def is_variable_defined(self, name: str) -> bool:
        """Whether the session's namespace on the board has ``name`` (one round trip)."""
        _check_identifier(name)
        value = self._session._call_helper(
            f"_mps_h({self._session._key},{name!r})", parts=("context",)
        )
        return bool(value)

    def define_variable(self, name: str, value: object) -> None:
        """Set ``name`` to ``value`` in the session's namespace on the board. ``value`` is
        anything ``eval`` can return: None, bool, numbers, str, bytes, bytearray, and
        lists/tuples/dicts/sets of them."""
        _check_identifier(name)
        self._session.exec(f"{name} = {to_board_literal(value)}")


def _check_identifier(name: str) -> None:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{name!r} is not a valid Python variable name")


# ---------------------------------------------------------------------------------------------
# ExecutorContext
# ---------------------------------------------------------------------------------------------


@dataclass
class _Deployment:
    info: MethodDeploymentInfo
    name: str  # the function's name in the board namespace
    epoch: int  # Communicator.reset_count when it was sent; a reset since means it is gone
    host: HostSource | None


class BackgroundThread:
    """A function running in a board thread, started by :meth:`ExecutorContext.start_thread`.

    ``state`` is the host's last knowledge: ``"running"``, ``"finished"``, ``"failed"`` (then
    ``error`` holds the board's repr of the exception), ``"stopped"`` (ended at cleanup) or
    ``"stuck"`` (did not stop at cleanup). :meth:`is_alive` asks the board.
    """

    def __init__(self, executor: ExecutorContext, thread_id: int, name: str) -> None:
        self.thread_id = thread_id
        self.name = name
        self.state = "running"
        self.error: str | None = None
        self._executor = executor

    def is_alive(self, timeout: float | None = None) -> bool:
        """Ask the board whether the thread still runs (one round trip)."""
        self._executor.refresh_threads(timeout=timeout)
        return self.state == "running"

    def __repr__(self) -> str:
        return f"<BackgroundThread {self.thread_id} {self.name}() {self.state}>"


class ExecutorContext:
    """Functions deployed on the board, and board threads running them.

    ``session.call(func, ...)`` sends ``func``'s source once per session and board life: it is
    cached by the SHA-256 of the source, sent again when the source changes, and after any
    reset of the board (soft or hard, seen through ``Communicator.reset_count``). Functions are
    deployed into the session's own namespace, so their globals are the session's and nothing
    leaks into another session.
    """

    def __init__(self, session: SessionLike) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._deployments: dict[str, _Deployment] = {}
        self._threads: dict[int, BackgroundThread] = {}
        self._next_thread = 1

    # -- deployment cache ------------------------------------------------------------------

    def _valid(self) -> dict[str, _Deployment]:
        epoch = self._session.manager.reset_count
        return {s: d for s, d in self._deployments.items() if d.epoch == epoch}

    @property
    def deployed_methods(self) -> Mapping[str, MethodDeploymentInfo]:
        """Signature -> :class:`MethodDeploymentInfo` of every function deployed and still
        on the board (a reset since empties it)."""
        with self._lock:
            return MappingProxyType({s: d.info for s, d in self._valid().items()})

    def is_method_deployed(self, signature: str) -> bool:
        """Whether the function with this signature is deployed and still on the board."""
        with self._lock:
            return signature in self._valid()

    def register_deployed_method(self, signature: str, info: MethodDeploymentInfo) -> None:
        """Record a function deployed by other means (e.g. ``session.exec`` of a ``def``), so
        it counts as deployed until the next reset. The board name is taken from
        ``signature``'s last dotted part before ``(``."""
        name = signature.split("(", 1)[0].rsplit(".", 1)[-1]
        with self._lock:
            self._forget_name(name)
            self._deployments[signature] = _Deployment(
                info, name, self._session.manager.reset_count, None
            )

    def _forget_name(self, name: str) -> None:
        # One board name holds one function: deploying another under it replaces the first.
        for sig in [s for s, d in self._deployments.items() if d.name == name]:
            del self._deployments[sig]

    def host_sources(self) -> dict[str, HostSource]:
        """Board function name -> host source, for mapping tracebacks."""
        with self._lock:
            return {d.name: d.host for d in self._deployments.values() if d.host is not None}

    def _unrecord(self, prepared: Prepared) -> None:
        with self._lock:
            self._deployments.pop(prepared.signature, None)

    def _deploy_prefix(self, prepared: Prepared, epoch: int) -> str:
        """The exec line that deploys ``prepared``, or "" when the board already has it."""
        with self._lock:
            have = self._deployments.get(prepared.signature)
        if have is not None and have.info.hash == prepared.hash and have.epoch == epoch:
            return ""
        return f"exec({prepared.source!r},_mpsg({self._session._key}))\n"

    def _record(self, prepared: Prepared, epoch: int) -> None:
        info = MethodDeploymentInfo(
            prepared.signature, prepared.hash, prepared.size, datetime.now(timezone.utc)
        )
        with self._lock:
            self._forget_name(prepared.name)
            self._deployments[prepared.signature] = _Deployment(
                info, prepared.name, epoch, prepared.host
            )

    def _send(
        self, func: Callable[..., object], line: str, timeout: float | None, parts: tuple[str, ...]
    ) -> object:
        """Deploy ``func`` if needed and run ``line`` after it, in one exchange."""
        prepared = prepare(func)
        session = self._session
        with session.manager.board(timeout):
            epoch = session.manager.reset_count
            prefix = self._deploy_prefix(prepared, epoch)
            if prefix:
                # Recorded before sending, so an error in this very call maps to the host.
                self._record(prepared, epoch)
            try:
                return session._call_helper(prefix + line, timeout=timeout, parts=parts)
            except BaseException as exc:
                # The deploy line ran when the board reported an error of the function itself.
                # Not when the source failed to compile, nor when the exchange timed out or
                # the link failed (unknown how far it got): then send it again next time.
                ran = (
                    isinstance(exc, DeviceError)
                    and not isinstance(exc, DeviceTimeout)
                    and exc.exc_type not in ("SyntaxError", "MemoryError")
                )
                if prefix and not ran:
                    self._unrecord(prepared)
                raise

    # -- calls -------------------------------------------------------------------------------

    def call(
        self,
        func: Callable[..., object],
        *args: object,
        timeout: float | None = None,
        **kwargs: object,
    ) -> object:
        """Run ``func(*args, **kwargs)`` on the board and return its value (see
        :meth:`DeviceSession.call <pytest_mpsession.session.session.DeviceSession.call>`)."""
        prepared = prepare(func)
        key = self._session._key
        line = (
            f"_mps_c({key},{prepared.name!r},{to_board_literal(tuple(args))},"
            f"{to_board_literal(dict(kwargs))})"
        )
        return self._send(func, line, timeout, ("core",))

    # -- threads -----------------------------------------------------------------------------

    @property
    def active_background_threads(self) -> list[BackgroundThread]:
        """Threads this session started that were running when the host last looked
        (:meth:`refresh_threads` asks the board)."""
        with self._lock:
            return [t for t in self._threads.values() if t.state == "running"]

    def start_thread(
        self, func: Callable[..., object], *args: object, timeout: float | None = None
    ) -> BackgroundThread:
        """Deploy ``func`` and run ``func(*args)`` in a new board thread (``_thread``).

        The function should poll ``mps_should_stop()`` (a name put in the session's
        namespace) and return when it is true: cleanup sets it and waits for the thread
        (``manager.thread_stop_timeout``); a thread that does not stop is reported in the
        cleanup error. Threads must not print: their output would mix into the raw REPL's.
        """
        prepared = prepare(func)
        with self._lock:
            thread_id = self._next_thread
            self._next_thread += 1
        args_literal = to_board_literal(tuple(args))
        line = f"_mps_t({self._session._key},{thread_id},{prepared.name!r},{args_literal})"
        try:
            self._send(func, line, timeout, ("core", "thread"))
        except DeviceError as exc:
            if exc.exc_type == "ImportError" and not isinstance(exc, DeviceTimeout):
                raise MpSessionError(
                    "this board has no _thread module, so start_thread cannot run; mark the "
                    "test @pytest.mark.requires_feature('threading')"
                ) from None
            raise
        handle = BackgroundThread(self, thread_id, prepared.name)
        with self._lock:
            self._threads[thread_id] = handle
        return handle

    def refresh_threads(self, timeout: float | None = None) -> None:
        """Ask the board how this session's threads are doing (one round trip; none once
        the session is cleaned up, when the handles already hold the final states)."""
        if self._session.closed:
            return
        status = self._session._call_helper(
            f"_mps_q({self._session._key})", timeout=timeout, parts=("core", "thread")
        )
        assert isinstance(status, dict)
        self._apply_status(status, finished="finished")

    def _apply_status(self, status: Mapping[object, object], *, finished: str) -> None:
        with self._lock:
            for tid, handle in self._threads.items():
                if handle.state != "running":
                    continue
                value = status.get(tid, 0)
                if value == 1:
                    continue
                if isinstance(value, str):
                    handle.state, handle.error = "failed", value
                else:
                    handle.state = finished

    def _after_cleanup(self, stuck: list[int], errors: Mapping[object, object]) -> list[int]:
        """Update the handles after the board cleanup; return the ids of stuck threads."""
        with self._lock:
            for tid, handle in self._threads.items():
                if handle.state != "running":
                    continue
                if tid in stuck:
                    handle.state = "stuck"
                elif tid in errors:
                    handle.state, handle.error = "failed", str(errors[tid])
                    log.warning(
                        "session %s: background thread %d (%s) failed: %s",
                        self._session.session_id,
                        tid,
                        handle.name,
                        handle.error,
                    )
                else:
                    handle.state = "stopped"
            return [t for t in stuck if t in self._threads]

    def _forget_board(self) -> None:
        """The board was reset: its threads and deployments are gone."""
        with self._lock:
            for handle in self._threads.values():
                if handle.state == "running":
                    handle.state = "stopped"
            self._deployments.clear()


# ---------------------------------------------------------------------------------------------
# FileSystemContext
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """What the host knows of a path on the board: ``type`` is ``"file"`` or ``"dir"``."""

    size: int
    type: str


_READ = ("core", "fs_read")
_WRITE = ("core", "fs_read", "fs_write")


def _key(path: str) -> str:
    norm = posixpath.normpath(path) if path else "."
    return norm


class FileSystemContext:
    """The board's filesystem, through this session.

    Works on boards without ``os.ilistdir``, ``os.stat`` (1.9 has ``os.size``) or
    ``hashlib``. Writes are binary-safe and sent in chunks of ``chunk_size`` bytes (sized
    for a 16 KB board; each chunk travels as a bytes literal of up to 4x its size), and are
    skipped when the board's file already has the same size and SHA-256 (or, without
    ``hashlib`` on the board, Adler-32) - checked on the board in the same round trip as the
    first chunk. ``cached_file_info`` keeps what the host learnt: this session's own writes,
    removes and ``mkdir`` keep it true; changes made by board code are seen after
    :meth:`refresh_directory` (or dropped with :meth:`invalidate_cache`).
    """

    #: bytes per write exchange; None: chosen from the board's free memory (see
    #: :meth:`write_chunk_size`)
    chunk_size: int | None = None
    #: bytes per read piece printed by the board (its repr, up to 4x longer, is built in
    #: the board's RAM); None: 64 on a board known to have under 32 KB free, else 256
    read_chunk_size: int | None = None
    #: keep the file helpers on the board between operations. They hold ~4 KB of RAM there;
    #: False removes them after each operation and sends them again with the next, which
    #: needs contiguous free RAM to compile them each time: on a fragmented 16 KB heap,
    #: keeping them is what works (measured on the emulator's legacy board).
    keep_helpers: bool = True

    def __init__(self, session: SessionLike) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._cache: dict[str, FileInfo] = {}
        self._cwd: tuple[int, str] | None = None

    @property
    def transient_helpers(self) -> bool:
        """Whether the board's file helpers are removed after each operation (``not
        keep_helpers``)."""
        return not self.keep_helpers

    @contextmanager
    def _op(self, timeout: float | None, path: str | None = None) -> Iterator[None]:
        with self._session.manager.board(timeout):
            try:
                yield
            except DeviceError as exc:
                if path is None or isinstance(exc, DeviceTimeout):
                    raise
                # the board's error names no file (1.9: "OSError: 2"): say which one
                raise DeviceError(
                    f"{path!r}: {exc}",
                    exc_type=exc.exc_type,
                    traceback=exc.traceback,
                    port=exc.port,
                    output=exc.output,
                ) from None
            finally:
                if self.transient_helpers and not self._session.closed:
                    self._session.manager.uninstall(("fs_write", "fs_read"), timeout)

    def _helper(
        self, line: str, timeout: float | None = None, parts: tuple[str, ...] = _READ
    ) -> object:
        return self._session._call_helper(line, timeout=timeout, parts=parts)

    @property
    def current_directory(self) -> str:
        """The board's working directory (``os.getcwd()``; ``""`` on a flat filesystem
        without it). Asked once per board life, then cached."""
        epoch = self._session.manager.reset_count
        if self._cwd is None or self._cwd[0] != epoch:
            with self._op(None):
                value = self._helper("_mps_fc()")
            self._cwd = (epoch, str(value))
        return self._cwd[1]

    @property
    def cached_file_info(self) -> Mapping[str, FileInfo]:
        """Normalized path -> :class:`FileInfo`, a read-only snapshot."""
        with self._lock:
            return MappingProxyType(dict(self._cache))

    def listdir(self, path: str = ".", timeout: float | None = None) -> list[str]:
        """The names in ``path`` on the board. Cached entries of ``path`` that are no longer
        there are dropped."""
        with self._op(timeout, path):
            names = self._session._call_helper_pieces(f"_mps_fl({path!r},0)", timeout, _READ)
        self._prune(path, {str(n) for n in names})
        return [str(n) for n in names]

    def refresh_directory(
        self, path: str = ".", timeout: float | None = None
    ) -> dict[str, FileInfo]:
        """Read ``path``'s entries with their size and type from the board (one round trip)
        into the cache; returns name -> :class:`FileInfo`."""
        with self._op(timeout, path):
            entries = self._session._call_helper_pieces(f"_mps_fl({path!r},1)", timeout, _READ)
        found: dict[str, FileInfo] = {}
        for entry in entries:
            name, stat = _pair(entry)
            if stat is None:
                continue  # vanished between listing and stat
            kind, size = _pair(stat)
            if not isinstance(size, int):
                raise MpSessionError(f"the board sent size {size!r} for {name!r}")
            found[str(name)] = FileInfo(size, "dir" if kind == "d" else "file")
        self._prune(path, set(found))
        with self._lock:
            for name, info in found.items():
                self._cache[_key(posixpath.join(path, name))] = info
        return found

    def _prune(self, path: str, present: set[str]) -> None:
        base = _key(path)
        with self._lock:
            for key in list(self._cache):
                parent, name = posixpath.split(key)
                if (parent or ".") == base and name not in present:
                    self.__drop(key)

    def __drop(self, key: str) -> None:
        self._cache.pop(key, None)
        prefix = key.rstrip("/") + "/"
        for other in [k for k in self._cache if k.startswith(prefix)]:
            del self._cache[other]

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget what is cached about ``path`` and everything under it (all, with None)."""
        with self._lock:
            if path is None:
                self._cache.clear()
                self._cwd = None
            else:
                self.__drop(_key(path))

    def read(self, path: str, timeout: float | None = None) -> bytes:
        """The bytes of file ``path`` on the board. The board prints it in pieces of
        ``read_chunk_size`` bytes; a board too short of memory for that gets the read again
        with pieces half as long (down to 16 bytes), which is then kept for this session."""
        with self._op(timeout, path):
            while True:
                size = self._read_size()
                try:
                    pieces = self._session._call_helper_pieces(
                        f"_mps_fr({path!r},{size})", timeout, _READ
                    )
                    break
                except DeviceError as exc:
                    if not _out_of_memory(exc) or size <= _MIN_CHUNK:
                        raise
                    self.read_chunk_size = size // 2
        data = b"".join(_as_bytes(piece) for piece in pieces)
        with self._lock:
            self._cache[_key(path)] = FileInfo(len(data), "file")
        return data

    def _read_size(self) -> int:
        if self.read_chunk_size is not None:
            return max(_MIN_CHUNK, int(self.read_chunk_size))
        free = self._known_free()
        return 64 if free is not None and free < 32 * 1024 else 256

    def _known_free(self) -> int | None:
        """The board's free memory as known without asking it: its capabilities', else
        what the board had free when the communicator installed its wrapper."""
        manager = self._session.manager
        caps = manager.known_capabilities
        if caps is not None and caps.memory_free is not None:
            return caps.memory_free
        free = getattr(manager.communicator, "free_at_install", None)
        return free if isinstance(free, int) and not isinstance(free, bool) else None

    def write_chunk_size(self) -> int:
        """Bytes of file data per write exchange: ``chunk_size`` when set, else sized to the
        board's free memory when the manager knows it (a chunk travels as a bytes literal
        of up to 4x its size, which the board must hold in one piece while compiling, and
        the raw REPL keeps a buffer as long as the longest line it was sent): 64 bytes below
        12 KB free (a micro:bit: ~8 KB), 128 below 32 KB (a 16 KB board), 1 KB below
        128 KB, 4 KB above; 256 while unknown. A chunk the board has no memory for is sent
        again in halves, and the smaller size is kept (``chunk_size``) for the rest of the
        session."""
        if self.chunk_size is not None:
            return max(_MIN_CHUNK, int(self.chunk_size))
        free = self._known_free()
        if free is None:
            return 256
        if free < 12 * 1024:
            return 64
        if free < 32 * 1024:
            return 128
        return 1024 if free < 128 * 1024 else 4096

    def write(
        self, path: str, data: bytes | bytearray | memoryview | str, timeout: float | None = None
    ) -> bool:
        """Write ``data`` (``str`` is written as UTF-8) to file ``path`` on the board;
        returns False when the board already held exactly this content (nothing written).
        ``timeout`` applies to each chunk's exchange."""
        if isinstance(data, str):
            data = data.encode()
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        elif not isinstance(data, bytes):
            raise TypeError(f"write needs bytes or str, not {type(data).__name__}")
        digest = hashlib.sha256(data).digest()
        adler = zlib.adler32(data)
        head = f"_mps_fw({path!r},{len(data)},{digest!r},{(adler & 0xFFFF, adler >> 16)!r},"
        with self._op(timeout, path):
            offset = 0
            while True:  # the first chunk, with the same-content check
                end = offset + self.write_chunk_size()
                more = int(end < len(data))
                try:
                    written = self._helper(f"{head}{data[:end]!r},{more})", timeout, _WRITE)
                    break
                except DeviceError as exc:
                    self._shrink_chunk(exc)
            offset = end
            while written and offset < len(data):
                end = offset + self.write_chunk_size()
                more = int(end < len(data))
                try:
                    self._session._exchange_raw(
                        f"_mps_fa({data[offset:end]!r},{more})", timeout, _WRITE
                    )
                except DeviceError as exc:
                    # Out of memory while compiling the chunk: nothing of it was written.
                    self._shrink_chunk(exc)
                    continue
                offset = end
        with self._lock:
            self._cache[_key(path)] = FileInfo(len(data), "file")
        return bool(written)

    def _shrink_chunk(self, exc: DeviceError) -> None:
        """Halve the write chunk after ``exc`` if it is the board running out of memory;
        re-raise it otherwise (or when chunks cannot get smaller)."""
        size = self.write_chunk_size()
        if not _out_of_memory(exc) or size <= _MIN_CHUNK:
            raise exc
        log.info("board short of memory for %d-byte chunks: using %d", size, size // 2)
        self.chunk_size = size // 2

    def remove(self, path: str, timeout: float | None = None) -> None:
        """Remove file ``path`` from the board."""
        with self._op(timeout, path):
            self._session._exchange_raw(f"_mps_fd({path!r})", timeout, _WRITE)
        with self._lock:
            self.__drop(_key(path))

    def mkdir(self, path: str, timeout: float | None = None) -> None:
        """Make directory ``path`` on the board (DeviceError ``NotImplementedError`` on a
        flat filesystem without ``os.mkdir``)."""
        with self._op(timeout, path):
            self._session._exchange_raw(f"_mps_fm({path!r})", timeout, _WRITE)
        with self._lock:
            self._cache[_key(path)] = FileInfo(0, "dir")


_MIN_CHUNK = 16


def _out_of_memory(exc: DeviceError) -> bool:
    return exc.exc_type == "MemoryError" and not isinstance(exc, DeviceTimeout)


def _pair(value: object) -> tuple[object, object]:
    if isinstance(value, tuple) and len(value) == 2:
        return value[0], value[1]
    raise MpSessionError(f"the board sent {value!r} where a pair was expected")


def _as_bytes(value: object) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise MpSessionError(f"the board sent {value!r} where file bytes were expected")
