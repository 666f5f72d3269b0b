"""Running board test files on a board (host side; the board side is ``board/_mpbt.py``).

One :class:`BoardRunner` per :class:`~pytest_mpsession.session.manager.DeviceSessionManager`
keeps what is on its board: the runner helpers (sent in small pieces once per board life,
again after a reset), the unittest shim where the board has no ``unittest``, the unit-test
modules loaded (each file once per board life), and the classes whose ``setUpClass`` ran.

Each run is one raw-REPL exchange through the communicator's ``exec_raw`` (stdout and stderr
as the board's bytes, the board's exception not raised), inside ``manager.board()``: the
board is held, and a board fault moves the manager through RECOVERING as for any session
call. Output tests use the raw exchange because run-tests.py compares exactly those bytes
(stdout, then the traceback) after its own normalisation.
"""

from __future__ import annotations

import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_mpsession.errors import MpSessionError

if TYPE_CHECKING:
    from pytest_mpsession.session.manager import DeviceSessionManager

__all__ = [
    "BoardRunner",
    "OutputRun",
    "UnitRun",
    "clean_board_traceback",
    "runner_for",
]

BOARD_DIR = Path(__file__).parent / "board"
RESULT = b"\x1e"
_FRAME = re.compile(r'^(\s*)File "(?P<file>[^"]*)", line (?P<line>\d+)(?P<rest>.*)$')
_MISSING = re.compile(r"NameError: name '_mpbt\w*' is.n.t defined|KeyError: \d+$")


def _board_source(name: str) -> str:
    """A board-side file without its comment lines (every byte costs a small board RAM)."""
    text = (BOARD_DIR / name).read_text(encoding="utf-8")
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")
    )


def _pieces(name: str) -> tuple[str, ...]:
    from pytest_mpsession.session.board import split_pieces

    return split_pieces(_board_source(name))


@dataclass
class OutputRun:
    """What an output test printed: ``stdout`` and ``stderr`` (the traceback) as bytes."""

    stdout: bytes
    stderr: bytes

    @property
    def crashed(self) -> bool:
        """The script ended by an exception (run-tests.py: ``CRASH``)."""
        return bool(self.stderr)

    @property
    def too_large(self) -> bool:
        """A ``MemoryError`` before the script ran at all (it did not compile in the
        board's RAM): run-tests.py's ``SKIP-TOO-LARGE``."""
        text = self.stderr.decode("utf-8", "replace")
        return not self.stdout and "MemoryError" in text and 'File "<string>"' not in text


@dataclass
class UnitRun:
    """The result of one unit test: ``outcome`` is "passed", "skipped" or "failed"."""

    outcome: str
    output: str = ""
    reason: str = ""
    traceback: str = ""
    exc_line: str = ""


def clean_board_traceback(text: str, path: Path | None, display: str) -> str:
    """A board traceback without the runner's frames (file ``<stdin>``), the test code's
    frames (file ``<string>``) named ``display`` with the line's source from ``path``."""
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    source: list[str] = []
    if path is not None:
        try:
            source = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            source = []
    out: list[str] = []
    for line in lines:
        match = _FRAME.match(line)
        if match is None:
            out.append(line)
            continue
        if match.group("file") == "<stdin>":
            continue
        if match.group("file") != "<string>":
            out.append(line)
            continue
        lineno = int(match.group("line"))
        out.append(f'{match.group(1)}File "{display}", line {lineno}{match.group("rest")}')
        if 0 < lineno <= len(source) and source[lineno - 1].strip():
            out.append(f"{match.group(1)}  {source[lineno - 1].strip()}")
    return "\n".join(out)


def _code_literal(source: bytes) -> str:
    """The file's source as a board string literal (bytes when it is not UTF-8)."""
    try:
        return repr(source.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(source)


@dataclass
class _BoardState:
    epoch: int | None = None
    shim: bool = False
    #: file key -> epoch when its module was loaded
    loaded: dict[int, int] = field(default_factory=dict)
    #: (file key, class) whose setUpClass ran, -> epoch
    classes: dict[tuple[int, str], int] = field(default_factory=dict)
    #: file key -> (epoch, what it printed) of a module that raised SystemExit as it loaded
    exited: dict[int, tuple[int, bytes]] = field(default_factory=dict)


class BoardRunner:
    """Runs board test files on one board (see the module docstring)."""

    def __init__(self, manager: DeviceSessionManager) -> None:
        self.manager = manager
        self._state = _BoardState()
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()
        #: exchanges spent installing helpers and loading modules (tests read it)
        self.install_count = 0
        self.load_count = 0

    # -- helpers on the board ---------------------------------------------------------------

    def _exec(self, comm: Any, code: str, timeout: float | None) -> tuple[bytes, bytes]:
        out, err = comm.exec_raw(code, timeout)
        return bytes(out), bytes(err)

    def _ensure_helpers(self, comm: Any, timeout: float | None, *, unit: bool) -> None:
        state = self._state
        epoch = comm.reset_count
        if state.epoch != epoch:
            state.loaded.clear()
            state.classes.clear()
            state.exited.clear()
            state.shim = False
            for piece in _pieces("_mpbt.py"):
                self.install_count += 1
                _, err = self._exec(comm, piece, timeout)
                if err:
                    raise MpSessionError(
                        f"could not install the board-test runner on the board at "
                        f"{self.manager.port}: {_last_line(err)}"
                    )
            state.epoch = comm.reset_count
        if unit and not state.shim:
            out, _ = self._exec(
                comm,
                "try:\n import unittest\n print(1)\nexcept ImportError:\n print(0)\n",
                timeout,
            )
            if out.strip() == b"0":
                for piece in _pieces("_unittest.py"):
                    self.install_count += 1
                    _, err = self._exec(comm, piece, timeout)
                    if err:
                        raise MpSessionError(
                            f"could not install the unittest shim on the board at "
                            f"{self.manager.port}: {_last_line(err)}"
                        )
                self._unittest_arg = "_mpbt_ut"
            else:
                self._unittest_arg = "None"
            state.shim = True

    _unittest_arg = "None"

    def file_key(self, path: str) -> int:
        """A small int naming ``path`` on the board (never a string: every string the board
        compiles may stay interned)."""
        with self._lock:
            return self._keys.setdefault(path, len(self._keys) + 1)

    # -- output tests ------------------------------------------------------------------------

    def run_output(self, source: bytes, timeout: float | None) -> OutputRun:
        """Run ``source`` as a script on the board; what it printed and its traceback."""
        code = f"_mpbt_o({_code_literal(source)})"
        for attempt in (0, 1):
            with self.manager.board(timeout) as comm:
                self._ensure_helpers(comm, timeout, unit=False)
                out, err = self._exec(comm, code, timeout)
            if attempt == 0 and _helpers_missing(err):
                self._state.epoch = None  # something removed them: send them again
                continue
            break
        return OutputRun(out, err)

    # -- unit tests ----------------------------------------------------------------------------

    def _load(
        self, comm: Any, key: int, source: bytes, module: str, timeout: float | None
    ) -> tuple[bytes, bytes] | None:
        """Load the file's module unless this board life has it; (stdout, stderr) of the
        load, or None when it was there."""
        state = self._state
        epoch = comm.reset_count
        if state.loaded.get(key) == epoch or state.exited.get(key, (None,))[0] == epoch:
            return None
        self.load_count += 1
        code = f"_mpbt_l({key},{_code_literal(source)},{module!r},{self._unittest_arg})"
        out, err = self._exec(comm, code, timeout)
        if not err:
            for k in [k for k in state.classes if k[0] == key]:
                del state.classes[k]
            printed, _, value = out.rpartition(RESULT)
            if value.strip() == b"('x',)":
                state.exited[key] = (epoch, printed)
            else:
                state.loaded[key] = epoch
        return out, err

    def run_unit(
        self,
        path: str,
        source: bytes,
        module: str,
        cls: str | None,
        test: str,
        timeout: float | None,
    ) -> UnitRun:
        """Run one unit test. The module is loaded first when this board life does not
        have it (a failure there is the test's failure; a module that printed ``SKIP`` and
        raised ``SystemExit`` skips every test of the file)."""
        key = self.file_key(path)
        for attempt in (0, 1):
            with self.manager.board(timeout) as comm:
                self._ensure_helpers(comm, timeout, unit=True)
                loaded = self._load(comm, key, source, module, timeout)
                if loaded is not None and loaded[1]:
                    out, err = loaded
                    if attempt == 0 and _helpers_missing(err):
                        self._state.epoch = None
                        continue
                    run = _unit_result(out, err, loading=True)
                    run.exc_line = f"the test module failed to load: {run.exc_line}"
                    return run
                exited = self._state.exited.get(key)
                if exited is not None and exited[0] == comm.reset_count:
                    return _exited_result(exited[1])
                first = cls is not None and (key, cls) not in self._state.classes
                call = f"_mpbt_t({key},{cls!r},{test!r},{1 if first else 0})"
                out, err = self._exec(comm, call, timeout)
                if attempt == 0 and _helpers_missing(err):
                    self._state.epoch = None
                    continue
                if first and cls is not None and not _setup_class_failed(err):
                    self._state.classes[(key, cls)] = comm.reset_count
            break
        return _unit_result(out, err, loading=False)

    def class_done(self, path: str, cls: str, timeout: float | None) -> tuple[bytes, bytes]:
        """Run ``tearDownClass`` of ``cls`` when its ``setUpClass`` ran on this board life."""
        key = self.file_key(path)
        with self.manager.board(timeout) as comm:
            if self._state.classes.pop((key, cls), None) != comm.reset_count:
                return b"", b""
            return self._exec(comm, f"_mpbt_k({key},{cls!r})", timeout)

    def file_done(self, path: str, timeout: float | None) -> None:
        """Drop the file's module from the board (its RAM back for the next file)."""
        key = self.file_key(path)
        with self.manager.board(timeout) as comm:
            if self._state.loaded.pop(key, None) != comm.reset_count:
                return
            self._exec(comm, f"_mpbt_u.pop({key},None)\n__import__('gc').collect()", timeout)


def _last_line(err: bytes) -> str:
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no message)"


def _helpers_missing(err: bytes) -> bool:
    return bool(err) and bool(_MISSING.search(_last_line(err)))


def _exited_result(printed: bytes) -> UnitRun:
    text = printed.decode("utf-8", "surrogateescape")
    lines = text.replace("\r\n", "\n").strip().splitlines()
    if lines and lines[-1] in ("SKIP", "SKIP-TOO-LARGE"):
        why = "too large for the board" if lines[-1] == "SKIP-TOO-LARGE" else "it printed SKIP"
        return UnitRun("skipped", reason=f"the test module ended as it loaded: {why}")
    return UnitRun(
        "failed",
        text,
        exc_line="the test module raised SystemExit as it loaded (print SKIP first to skip it)",
    )


def _setup_class_failed(err: bytes) -> bool:
    return b"in setUpClass" in err


def _unit_result(out: bytes, err: bytes, *, loading: bool) -> UnitRun:
    from pytest_mpsession.communicator import parse_literal

    printed, marker, value = out.rpartition(RESULT)
    text = (printed if marker else out).decode("utf-8", "surrogateescape")
    if err:
        tb = err.decode("utf-8", "surrogateescape")
        return UnitRun("failed", text, traceback=tb, exc_line=_last_line(err))
    if not marker:
        what = "the test module" if loading else "the test"
        return UnitRun(
            "failed", text, exc_line=f"{what} ended without a result (the board sent no marker)"
        )
    try:
        result = parse_literal(value.decode("utf-8", "replace").strip())
    except ValueError:
        return UnitRun("failed", text, exc_line=f"unreadable result {value[:80]!r}")
    if result == 0:
        return UnitRun("passed", text)
    if result == ("x",):
        return UnitRun("failed", text, exc_line="the test raised SystemExit")
    if isinstance(result, tuple) and result and result[0] == "s":
        return UnitRun("skipped", text, reason=str(result[1]) if len(result) > 1 else "")
    return UnitRun("failed", text, exc_line=f"unexpected result {result!r}")


_RUNNERS: weakref.WeakKeyDictionary[Any, BoardRunner] = weakref.WeakKeyDictionary()
_RUNNERS_LOCK = threading.Lock()


def runner_for(manager: DeviceSessionManager) -> BoardRunner:
    """The :class:`BoardRunner` of ``manager``'s board (one per manager)."""
    with _RUNNERS_LOCK:
        runner = _RUNNERS.get(manager)
        if runner is None:
            runner = _RUNNERS[manager] = BoardRunner(manager)
        return runner
