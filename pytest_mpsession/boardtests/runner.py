"""Running board test files on a board (host side; the board side is ``board/_mpbt.py``).

One :class:`BoardRunner` per :class:`~pytest_mpsession.session.manager.DeviceSessionManager`
keeps what is on its board: the runner helpers (sent in small pieces once per board life,
again after a reset), the unittest shim where the board has no ``unittest``, the unit-test
modules loaded (each file once per board life), and the classes whose ``setUpClass`` ran.

Each run is one raw-REPL exchange through the communicator's ``exec_raw`` (stdout and stderr
as the board's bytes, the board's exception not raised), inside ``manager.board()``: the
board is held, and a board fault moves the manager through RECOVERING as for any session
call. Output tests use the raw exchange because run-tests.py compares exactly those bytes
(stdout, then the traceback) after its own normalisation. An output test is one exchange:
on a board with the RAM for the isolation code, the snapshot of the board's state, the run
and the restore travel together in the call of ``_mpbt_o``.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Callable
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
_MISSING = re.compile(r"NameError: name '_mpbt\w*' is(?:n't| not) defined|KeyError: \d+$")
_MISSING_OUTPUT = re.compile(r"NameError: name '_mpbt\w*' is(?:n't| not) defined")


def _board_source(name: str) -> str:
    """A board-side file without its comment lines (every byte costs a small board RAM)."""
    text = (BOARD_DIR / name).read_text(encoding="utf-8")
    return "".join(
        line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#")
    )


def _pieces(name: str) -> tuple[str, ...]:
    from pytest_mpsession.session.board import split_pieces

    return split_pieces(_board_source(name))


def shim_sections(name: str = "_unittest.py") -> dict[str, str]:
    """The sections of a sectioned board file (``board/_unittest.py``, the shim, by
    default): name -> source; a section named by several words is stored under each."""
    text = (BOARD_DIR / name).read_text(encoding="utf-8")
    sections: dict[str, str] = {}
    names: list[str] = []
    body: list[str] = []
    for line in [*text.splitlines(keepends=True), "#@ \n"]:
        if line.startswith(("#@", "# @")):  # "# @": as a formatter rewrites "#@"
            joined = "".join(body)
            for name in names:
                sections[name] = joined
            names, body = line.split("@", 1)[1].split(), []
        elif names and not line.lstrip().startswith("#"):
            body.append(line)
    return sections


_SHIM_NAME = re.compile(r"\b(skip|skipIf|skipUnless|expectedFailure|skipTest|fail|assert\w+)\b")


def shim_names(source: bytes) -> set[str]:
    """The shim sections a test module uses (by the names in its source)."""
    known = shim_sections()
    found = set(_SHIM_NAME.findall(source.decode("utf-8", "replace")))
    return {name for name in found if name in known}


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
        if self.stdout or "MemoryError" not in text:
            return False
        # no frame of the script's own: only the plugin's (the wrapper, _mpbt_o) are there
        return 'File "' not in clean_board_traceback(text, None, "")


@dataclass
class UnitRun:
    """The result of one unit test: ``outcome`` is "passed", "skipped" or "failed"."""

    outcome: str
    output: str = ""
    reason: str = ""
    traceback: str = ""
    exc_line: str = ""


def _is_helper(func: str) -> bool:
    """A frame of the plugin's own board code: the checked-exchange wrapper (``_mpsx``),
    the session core (``_mps*``), the board-test runner and its unittest (``_mpbt*``)."""
    return func.startswith(("_mps", "_mpbt"))


def clean_board_traceback(
    text: str, path: Path | None, display: str, *, verbatim: bool = False, load: bool = False
) -> str:
    """A board traceback without the plugin's frames, the test code's frames named
    ``display`` with the line's source from ``path``.

    The plugin's frames are told by their function names (see :func:`_is_helper`), and the
    one-line call of a helper by its place: a ``<module>`` frame right before a helper's
    frame. Every other frame of code the plugin sent (``<string>``, ``<stdin>``) is the test
    file's, with the file's own line numbers (the code is sent unchanged, in pieces padded to
    keep them). ``verbatim`` and ``load`` are kept for callers; the frames decide."""
    del verbatim, load
    lines = text.replace("\r\n", "\n").rstrip("\n").split("\n")
    source: list[str] = []
    if path is not None:
        try:
            source = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            source = []
    parsed: list[tuple[str, re.Match[str] | None]] = [(ln, _FRAME.match(ln)) for ln in lines]
    funcs = [
        (m.group("rest").partition(", in ")[2].strip() if m is not None else None)
        for _, m in parsed
    ]
    out: list[str] = []
    for i, (line, match) in enumerate(parsed):
        func = funcs[i]
        if match is None or func is None:
            out.append(line)
            continue
        if _is_helper(func):
            continue
        nxt = next((f for f in funcs[i + 1 :] if f is not None), None)
        if func == "<module>" and nxt is not None and _is_helper(nxt):
            continue  # the one-line call of a helper
        file = match.group("file")
        if file not in ("<string>", "<stdin>"):
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
    #: the board has no unittest (known once ``shim`` is True), and the shim sections sent
    needs_shim: bool = False
    #: runner parts sent (_mpbt_out.py, _mpbt_unit.py)
    parts: set[str] = field(default_factory=set)
    shim_sections: set[str] = field(default_factory=set)


class BoardRunner:
    """Runs board test files on one board (see the module docstring)."""

    def __init__(self, manager: DeviceSessionManager) -> None:
        self.manager = manager
        caps = manager.known_capabilities
        free = caps.memory_free if caps is not None else None
        #: the board has the RAM for the builtins check (see board/_mpbt_builtins.py)
        self.large_board = free is None or free > 48 * 1024
        self._state = _BoardState()
        self._keys: dict[str, int] = {}
        self._lock = threading.Lock()
        #: exchanges spent installing helpers and loading modules (tests read it)
        self.install_count = 0
        self.load_count = 0
        #: shim sections the file about to run uses
        self._wanted: set[str] = set()
        #: a small board ran a board test file since its last reset
        self._dirty = False
        #: a small board's files before the current file (repr of os.listdir())
        self._files_before: str | None = None

    # -- helpers on the board ---------------------------------------------------------------

    def _exec(self, comm: Any, code: str | bytes, timeout: float | None) -> tuple[bytes, bytes]:
        out, err = comm.exec_raw(code, timeout)
        return bytes(out), bytes(err)

    def _fresh_board(self, comm: Any, timeout: float | None) -> None:
        """A small board starts each board test file on a fresh soft reset: its isolation,
        and all its RAM for the file (there is no room for the snapshot-and-restore code).
        The reset after each file (:meth:`file_done`) usually did it already."""
        if not self.large_board and self._dirty and self._state.epoch == comm.reset_count:
            comm.soft_reset(timeout)
        self._dirty = True
        if not self.large_board and self._files_before is None:
            # the flash outlives a reset: the files a test file makes are removed after it
            out, err = self._exec(comm, _LIST_FILES, timeout)
            if not err:
                self._files_before = out.strip().decode("utf-8", "replace")

    def _install(
        self, comm: Any, pieces: tuple[str, ...], what: str, timeout: float | None
    ) -> None:
        """Send board code piece by piece; a piece the board refuses is a one-line error
        naming ``what`` (``"the board-test runner (x)"``)."""
        for piece in pieces:
            self.install_count += 1
            _, err = self._exec(comm, piece, timeout)
            if err:
                raise MpSessionError(
                    f"could not install {what} on the board at "
                    f"{self.manager.port}: {_last_line(err)}"
                )

    def _ensure_helpers(
        self, comm: Any, timeout: float | None, *, unit: bool, call: bool = False
    ) -> None:
        state = self._state
        epoch = comm.reset_count
        if state.epoch != epoch:
            state.loaded.clear()
            state.classes.clear()
            state.exited.clear()
            state.shim = False
            self._install(comm, _pieces("_mpbt.py"), "the board-test runner", timeout)
            if self.large_board:
                self._install(comm, _pieces("_mpbt_iso.py"), "the board-test runner", timeout)
            else:
                self._exec(comm, "_mpbt_s=lambda:None\n_mpbt_z=lambda g:None", timeout)
            self._dirty = False
            if self.large_board:
                for piece in _pieces("_mpbt_builtins.py"):
                    self.install_count += 1
                    self._exec(comm, piece, timeout)  # without it builtins are not restored
            state.epoch = comm.reset_count
            state.parts = set()
        part = "_mpbt_out.py"
        if call and part not in state.parts:
            self._install(comm, _pieces(part), f"the board-test runner ({part})", timeout)
            state.parts.add(part)
        if unit and "unit" not in state.parts:
            from pytest_mpsession.session.board import split_pieces

            pieces = split_pieces(shim_sections("_mpbt_unit.py")["runner"])
            self._install(comm, pieces, "the board-test runner (unit tests)", timeout)
            state.parts.add("unit")
        if unit and not state.shim:
            out, _ = self._exec(
                comm,
                "try:\n import unittest\n print(1)\nexcept ImportError:\n print(0)\n",
                timeout,
            )
            state.needs_shim = out.strip() == b"0"
            state.shim = True
            state.shim_sections = set()
        if unit and state.needs_shim:
            wanted = ["core", *sorted(self._wanted - state.shim_sections)]
            sections = shim_sections()
            from pytest_mpsession.session.board import split_pieces

            for name in wanted:
                if name in state.shim_sections:
                    continue
                pieces = split_pieces(sections[name])
                self._install(comm, pieces, f"the unittest shim ({name})", timeout)
                # a section of several names was sent once for all of them
                same = sections[name]
                state.shim_sections.update(n for n, text in sections.items() if text is same)

    @property
    def _unittest_arg(self) -> str:
        return "_mpbt_ut" if self._state.needs_shim else "None"

    def file_key(self, path: str) -> int:
        """A small int naming ``path`` on the board (never a string: every string the board
        compiles may stay interned)."""
        with self._lock:
            return self._keys.setdefault(path, len(self._keys) + 1)

    # -- output tests ------------------------------------------------------------------------

    def run_output(self, source: bytes, timeout: float | None) -> OutputRun:
        """Run ``source`` as a script on the board; what it printed and its traceback.

        On a board with the RAM for the isolation code, one checked exchange calls the
        runner's ``_mpbt_o`` (``board/_mpbt_out.py``): the snapshot of what the board has,
        the script in a namespace of its own (``__name__ == "__main__"``, ``SystemExit``
        ending it) and the restore all happen in it, the restore even when the script
        raised or was interrupted. A small board runs the source itself through the
        communicator's checked exchange (no second copy of it in a literal: the board holds
        the source once), in a namespace that is dropped after it (the board is soft-reset
        after each file: its isolation)."""
        run = getattr(self.manager.communicator, "run", None)
        if run is None or self.large_board:
            return self._run_output_call(source, timeout)
        text = source.decode("utf-8", "surrogateescape")
        with self.manager.board(timeout) as comm:
            self._fresh_board(comm, timeout)
            self._ensure_helpers(comm, timeout, unit=False)
            try:
                reply = comm.run(text, key=OUTPUT_KEY, timeout=timeout)
            finally:
                self._exec(comm, _DROP_NAMESPACE % OUTPUT_KEY, timeout)
        return OutputRun(bytes(reply.output), bytes(reply.traceback))

    def run_output_ahead(
        self, source: bytes, timeout: float | None, *, within: float | None = None
    ) -> bool:
        """Start the output test ``source`` on the board without waiting for its end (see
        :meth:`Communicator.run_ahead`), so that the board runs it while pytest reports the
        test before it: the next :meth:`run_output` of the same source reads its reply.
        Only on a board with the isolation code (the test is then one exchange that
        restores the board itself) whose runner is in place, and (``within``) when its code
        crosses the link in that many seconds; whether it was sent."""
        if not self.large_board:
            return False
        code = f"_mpbt_o({_code_literal(source)})"
        with self.manager.board(timeout) as comm:
            run_ahead = getattr(comm, "run_ahead", None)
            state = self._state
            if run_ahead is None or state.epoch != comm.reset_count:
                return False
            if "_mpbt_out.py" not in state.parts:
                return False
            line_rate = getattr(comm, "_line_rate", None)  # bytes a second the link carries
            if within is not None and line_rate is not None and len(code) / line_rate() > within:
                return False
            return bool(run_ahead(code, timeout))

    def _run_output_call(self, source: bytes, timeout: float | None) -> OutputRun:
        code = f"_mpbt_o({_code_literal(source)})"
        for attempt in (0, 1):
            with self.manager.board(timeout) as comm:
                self._fresh_board(comm, timeout)
                self._ensure_helpers(comm, timeout, unit=False, call=True)
                out, err = self._exec(comm, code, timeout)
            if attempt == 0 and _helpers_missing(err, output=True):
                self._state.epoch = None  # something removed them: send them again
                continue
            break
        return OutputRun(out, err)

    # -- unit tests ----------------------------------------------------------------------------

    def _load(
        self,
        comm: Any,
        key: int,
        source: bytes,
        module: str,
        timeout: float | None,
        literal: bool = False,
    ) -> tuple[bytes, bytes] | None:
        """Load the file's module unless this board life has it: its source as the code of
        an exchange of its own, between ``_mpbt_p`` and ``_mpbt_q``; (stdout, stderr) of the
        load, or None when it was there."""
        from pytest_mpsession.errors import BoardResetError

        state = self._state
        epoch = comm.reset_count
        if state.loaded.get(key) == epoch or state.exited.get(key, (None,))[0] == epoch:
            return None
        self.load_count += 1
        if state.needs_shim:
            source = shim_imports(source)
        self._exec(comm, _unit_code("prepare", K=key, M=module, U=self._unittest_arg), timeout)
        try:
            if literal:
                out, err = self._exec(comm, _unit_code("load_literal", S=source), timeout)
            else:
                out, err = self._exec(comm, source, timeout)
        except BoardResetError:
            # SystemExit at the top of the module: the board's REPL soft-resets, as for a
            # script (what it printed is gone with the reset)
            state.exited[key] = (comm.reset_count, b"")
            return b"", b""
        self._exec(comm, _unit_code("finish", K=key), timeout)
        if not err and out.rpartition(RESULT)[2].strip() == b"('x',)":
            state.exited[key] = (epoch, out.rpartition(RESULT)[0])
            self._exec(comm, _unit_code("drop", K=key), timeout)
            return out, err
        if err:
            self._exec(comm, _unit_code("drop", K=key), timeout)
            return out, err
        for k in [k for k in state.classes if k[0] == key]:
            del state.classes[k]
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
        literal: bool = False,
        set_up_class: bool = True,
    ) -> UnitRun:
        """Run one unit test. The module is loaded first when this board life does not
        have it (a failure there is the test's failure; a module that printed ``SKIP`` and
        raised ``SystemExit`` skips every test of the file)."""
        key = self.file_key(path)
        self._wanted = shim_names(source)
        for attempt in (0, 1):
            with self.manager.board(timeout) as comm:
                if self._state.loaded.get(key) != comm.reset_count:
                    self._fresh_board(comm, timeout)
                self._ensure_helpers(comm, timeout, unit=True)
                loaded = self._load(comm, key, source, module, timeout, literal)
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
                first = set_up_class and cls is not None and (key, cls) not in self._state.classes
                call = _unit_code("test", K=key, C=cls, T=test, A=1 if first else 0)
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
            return self._exec(comm, _unit_code("teardown_class", C=cls), timeout)

    def file_done(self, path: str, timeout: float | None) -> None:
        """Drop the file's module from the board (its RAM back for the next file); a small
        board is soft-reset instead: the runner's RAM back too, for what runs next."""
        key = self.file_key(path)
        if not self.large_board:
            before, self._files_before = self._files_before, None
            if before is not None and before.startswith("["):
                with self.manager.board(timeout) as comm:
                    self._exec(comm, _REMOVE_FILES % before, timeout)
            self.manager.reset_board("soft", timeout)
            return
        with self.manager.board(timeout) as comm:
            if self._state.loaded.pop(key, None) != comm.reset_count:
                return
            self._exec(comm, _unit_code("drop", K=key), timeout)


#: the checked exchange's namespace key of output tests (far from the sessions' small keys)
OUTPUT_KEY = 999_983
#: after an output test on a small board: its namespace dropped (its RAM back)
_DROP_NAMESPACE = "_mps_ns.pop(%d,None)"

_LIST_FILES = "try:\n import os\n print(repr(os.listdir()))\nexcept Exception:\n pass\n"
_REMOVE_FILES = (
    "try:\n import os\n for f in os.listdir():\n  if f not in %s:\n   os.remove(f)\n"
    "except Exception:\n pass\n"
)


_IMPORT_UNITTEST = re.compile(rb"^([ \t]*)import unittest(?: as (\w+))?[ \t]*(#.*)?$", re.M)
_FROM_UNITTEST = re.compile(rb"^([ \t]*)from unittest import ([\w ,]+?)[ \t]*(#.*)?$", re.M)


def shim_imports(source: bytes) -> bytes:
    """``source`` taking the plugin's unittest (``_mpbt_ut``) where it imports unittest, each
    line kept in its place: ``import unittest`` becomes ``unittest=_mpbt_ut``, ``from unittest
    import TestCase as T`` becomes ``T=_mpbt_ut.TestCase`` (a 1.9 board may have no
    ``sys.modules`` to put the shim in)."""

    def one(match: re.Match[bytes]) -> bytes:
        return match.group(1) + (match.group(2) or b"unittest") + b"=_mpbt_ut"

    def many(match: re.Match[bytes]) -> bytes:
        parts = []
        for name in match.group(2).split(b","):
            real, _, alias = name.strip().partition(b" as ")
            parts.append((alias.strip() or real.strip()) + b"=_mpbt_ut." + real.strip())
        return match.group(1) + b";".join(parts)

    return _FROM_UNITTEST.sub(many, _IMPORT_UNITTEST.sub(one, source))


def _unit_code(section: str, **values: object) -> str:
    """A unit-test exchange of ``board/_mpbt_unit.py`` with its ``@X@`` values filled in:
    strings as board literals, the rest as written (ints, ``None``, ``_mpbt_ut``)."""
    code = shim_sections("_mpbt_unit.py")[section]
    for name, value in values.items():
        if isinstance(value, bytes):
            text = _code_literal(value)
        elif isinstance(value, str) and name in "MCT":
            text = repr(value)
        else:
            text = str(value)
        code = re.sub(rf"\b_{name}_\b", _literal_replacement(text), code)
    return code


def _literal_replacement(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


def _last_line(err: bytes) -> str:
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no message)"


def _helpers_missing(err: bytes, *, output: bool = False) -> bool:
    """Whether the runner's board code is gone (a test removed it, or the board lost its
    RAM unseen). ``output``: of an output test's call, where a ``KeyError`` is the test's."""
    if not err:
        return False
    last = _last_line(err)
    if output:
        return bool(_MISSING_OUTPUT.search(last))
    return bool(_MISSING.search(last))


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
