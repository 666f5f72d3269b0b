"""pytest nodes of board test files: a file, its unit-test classes, and the test items.

The items run through the plugin's own board machinery, as a test that uses
``device_session`` does: the same board (``board_or_skip``: skipped without a board, failed
with the board's error under xdist), a :class:`DeviceSession` of their own per test (the
``session_start``/``session_finish`` hooks, and the cleanup per ``--mp-reset`` or the file's
``mp_reset``), the recovery before the next test after a board fault, and the skip of every
device test once the board is broken (they declare ``device_session`` in ``fixturenames`` so
the plugin's ``pytest_runtest_setup`` and collection treat them as device tests).
"""

from __future__ import annotations

import difflib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from pytest_mpsession.boardtests import mprules
from pytest_mpsession.boardtests.source import BoardFileInfo, UnitTest, read_board_file

if TYPE_CHECKING:
    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from pytest_mpsession.boardtests.runner import BoardRunner
    from pytest_mpsession.session.manager import DeviceSessionManager
    from pytest_mpsession.session.session import DeviceSession

__all__ = ["BoardTestClass", "BoardTestFailure", "BoardTestFile", "BoardTestItem"]

_MARKERS = ("requires_feature", "requires_platform", "requires_firmware", "mp_reset")


class BoardTestFailure(Exception):
    """A board test's failure, shown as its message alone (no host traceback)."""


def _matrix(config: pytest.Config) -> list[tuple[int | None, str]]:
    """The boards each test runs on: under ``--mp-dist each`` with a pool, ``(index,
    label)`` of every board (one item per board, ``NAME[label]``); else one unnamed one."""
    from pytest_mpsession.farm.hooks import matrix_boards

    return list(matrix_boards(config)) or [(None, "")]


def _new_item(
    parent: pytest.Collector, name: str, test: UnitTest | None, index: int | None, label: str
) -> BoardTestItem:
    """A test's item on the matrix board ``index`` (``NAME[label]``), or the only one."""
    from pytest_mpsession.farm.requirements import BOARD_INDEX

    if not label:
        return BoardTestItem.from_parent(parent, name=name, test=test)
    extra: dict[str, Any] = {}
    parent_id: Any = getattr(parent, "id", None)
    if parent_id is not None and hasattr(parent_id, "with_params"):
        # pytest 9 keeps a test id's "[...]" apart (NodeId.params), and --lf matches on it:
        # the label must be the id's params, as a parametrized function's are
        extra["nodeid"] = parent_id.child(name).with_params(label)
    item = BoardTestItem.from_parent(parent, name=f"{name}[{label}]", test=test, **extra)
    if index is not None:
        item.stash[BOARD_INDEX] = index
    return item


def _note_runner(node: BoardTestFile | BoardTestClass, runner: BoardRunner) -> None:
    """``runner``'s board ran a test of ``node`` (its teardown goes there too)."""
    if not any(r is runner for r in node._runners):
        node._runners.append(runner)


class BoardTestFile(pytest.File):
    """A board test file: read on the host, never imported."""

    info: BoardFileInfo
    #: the runners of the boards this file's tests ran on (its module is dropped there)
    _runners: list[BoardRunner]

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        """One item for an output test or a file that cannot run; one per unit test (each
        once per board under ``--mp-dist each``, grouped by board)."""
        self.info = info = read_board_file(self.path)
        self._runners = []
        for name in _MARKERS:
            values = info.requirements.get(name)
            if values:
                self.add_marker(getattr(pytest.mark, name)(*values))
        boards = _matrix(self.config)
        if info.error is not None or info.kind == "output":
            for index, label in boards:
                yield _new_item(self, self.path.name, None, index, label)
            return
        classes: dict[str, BoardTestClass] = {}
        for index, label in boards:
            for test in info.tests:
                if test.cls is None:
                    yield _new_item(self, test.name, test, index, label)
        for test in info.tests:
            if test.cls is not None and test.cls not in classes:
                classes[test.cls] = BoardTestClass.from_parent(self, name=test.cls)
                yield classes[test.cls]

    def teardown(self) -> None:
        """After the file's last test here: its module is dropped from each board."""
        runners, self._runners = self._runners, []
        for runner in runners:
            runner.file_done(str(self.path), _timeout(self.config))


class BoardTestClass(pytest.Collector):
    """A ``unittest.TestCase`` subclass of a board test file."""

    #: the runners of the boards this class's tests ran on
    _runners: list[BoardRunner]

    def collect(self) -> Iterator[pytest.Item]:
        """One item per test method (inherited ones of the file's own classes included),
        each once per board under ``--mp-dist each``, grouped by board."""
        parent = self.parent
        assert isinstance(parent, BoardTestFile)
        self._runners = []
        for index, label in _matrix(self.config):
            for test in parent.info.tests:
                if test.cls == self.name:
                    yield _new_item(self, test.name, test, index, label)

    def teardown(self) -> None:
        """After the class's last test here: its ``tearDownClass`` on each board."""
        runners, self._runners = getattr(self, "_runners", []), []
        file = self.parent
        assert isinstance(file, BoardTestFile)
        if "tearDownClass" not in file.info.class_hooks.get(self.name, ()):
            return
        errors = []
        for runner in runners:  # every board's tearDownClass runs; the first failure shows
            _out, err = runner.class_done(str(file.path), self.name, _timeout(self.config))
            if err:
                errors.append(err)
        for err in errors[:1]:
            from pytest_mpsession.boardtests.runner import clean_board_traceback

            raise BoardTestFailure(
                f"{self.name}.tearDownClass failed on the board:\n"
                + clean_board_traceback(
                    err.decode("utf-8", "replace"), file.path, _display(file), verbatim=True
                )
            )


def _timeout(config: pytest.Config) -> float:
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    return float(state.settings.timeout) if state is not None else 10.0


def _display(node: Any) -> str:
    path = getattr(node, "path", None)
    if path is None:
        return "?"
    try:
        return str(Path(path).relative_to(node.config.invocation_params.dir))
    except ValueError:
        return str(path)


class BoardTestItem(pytest.Item):
    """One board test: an output test (``test`` None) or one unit test."""

    def __init__(self, *, test: UnitTest | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.test = test
        #: makes the plugin treat this item as a device test (skips, recovery, broken board)
        self.fixturenames = ["device_session"]
        self.session_: DeviceSession | None = None
        self.manager_: DeviceSessionManager | None = None
        self._exchange_done = False
        #: the test pytest runs after this one, and when this one started (set as it starts)
        self.next_item: pytest.Item | None = None
        self.started = 0.0
        self._plan: _OutputPlan | None = None

    @property
    def file(self) -> BoardTestFile:
        """The file this test is in."""
        node = self.parent
        while node is not None and not isinstance(node, BoardTestFile):
            node = node.parent
        assert node is not None
        return node

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the test is (its line for a unit test)."""
        if self.test is None:
            # The domain heads the test's failure ("int1.py (output test)"; none would be
            # "test session"). Not the bare name: the terminal rewrites a domain the node id
            # ends with, dots to "::" ("int1::py").
            return self.path, 0, f"{self.name} (output test)"
        return self.path, self.test.lineno - 1, self.nodeid.split("::", 1)[-1]

    # -- the plugin's board machinery ------------------------------------------------------

    def setup(self) -> None:
        """The board (or a skip / the board's error) and a session of this test's own."""
        from pytest_mpsession.plugin.fixtures import board_or_skip

        info = self.file.info
        if info.error is not None:
            return  # reported by runtest() as this file's failure; no board needed
        board = board_or_skip(self.config)
        manager = board.manager
        assert manager is not None
        self.manager_ = manager
        self.session_ = manager.create_session(timeout=board.settings.timeout)
        self.config.hook.pytest_mpsession_session_start(session=self.session_)

    def teardown(self) -> None:
        """The session's cleanup per the reset policy, as ``device_session`` does it."""
        from pytest_mpsession.plugin.recovery import finish_session, reset_policy
        from pytest_mpsession.plugin.state import CALL_REPORT, get_state

        session, self.session_ = self.session_, None
        manager = self.manager_
        state = get_state(self.config)
        if session is None or manager is None or state is None:
            return
        settings = state.settings
        policy = reset_policy(self, settings.reset)
        report = self.stash.get(CALL_REPORT, None)
        interrupted = not self._exchange_done and (report is None or not report.passed)
        finish_session(
            self.config, manager, session, policy,
            interrupted=interrupted, timeout=settings.timeout, item=self,
        )  # fmt: skip

    def _runner(self) -> BoardRunner:
        from pytest_mpsession.boardtests.runner import runner_for

        assert self.manager_ is not None
        return runner_for(self.manager_)

    # -- running -----------------------------------------------------------------------------

    def runtest(self) -> None:
        """Run the test on the board and judge it."""
        info = self.file.info
        if info.error is not None:
            raise BoardTestFailure(info.error)
        if self.test is None:
            self._run_output(info)
        else:
            self._run_unit(info, self.test)

    def _prepare_output(self, runner: BoardRunner, timeout: float) -> _OutputPlan:
        """What an output test needs before the board: its skip by run-tests.py's rules
        (``pytest.skip``) and its expected output (a bad ``.exp``: BoardTestFailure)."""
        from pytest_mpsession.boardtests.expected import (
            ExpectedError,
            cpython_output,
            expected_file,
            read_expected,
        )

        if self._plan is not None:
            return self._plan
        root = mprules.micropython_tests_root(self.path)
        rel = self.path.relative_to(root).as_posix() if root is not None else None
        if root is not None and rel is not None:
            target = _target_info(runner, root, timeout)
            reason = mprules.feature_skip(rel, target)
            if reason is not None:
                _skip(reason)
        # the expected output first: a bad .exp fails the test without using the board
        exp = expected_file(self.path, root is not None)
        try:
            if exp is not None:
                expected = read_expected(exp)
            else:
                cache = getattr(self.config, "cache", None)
                expected, _cached = cpython_output(self.path, self.file.info.source, cache)
        except ExpectedError as exc:
            raise BoardTestFailure(str(exc)) from None
        self._plan = _OutputPlan(rel, exp, expected)
        return self._plan

    def _send_next_ahead(self, runner: BoardRunner, timeout: float) -> None:
        """Start the next test on the board now, when it is an output test that runs on
        this board right after this one with nothing in between that could use or change
        the board (see :func:`_runs_next_unchanged`): the board runs it while pytest
        reports this one, and its own run reads the reply."""
        nxt = self.next_item
        if not isinstance(nxt, BoardTestItem) or not _runs_next_unchanged(self, nxt):
            return
        try:
            nxt._prepare_output(runner, timeout)
            # pytest-timeout's limit counts this test's time: sending the next one's code
            # must take a small part of what is left of it (on a slow link, a long test's
            # code could otherwise fail this test by a timeout that is not its own)
            limit = _pytest_timeout(self)
            within = None if limit is None else (limit - (time.monotonic() - self.started)) / 4
            runner.run_output_ahead(nxt.file.info.source, timeout, within=within)
        except (pytest.skip.Exception, Exception):
            # It does not reach the board (a skip, a bad .exp), or the board would not take
            # it now: the next test meets that itself, never this one.
            return

    def _run_output(self, info: BoardFileInfo) -> None:
        from pytest_mpsession.boardtests.runner import clean_board_traceback

        runner = self._runner()
        if not runner.large_board:
            _note_runner(self.file, runner)  # a small board is reset after the file
        timeout = _timeout(self.config)
        try:
            rel, exp, expected = self._prepare_output(runner, timeout)
        except pytest.skip.Exception:
            self._exchange_done = True  # nothing was sent: nothing to interrupt
            raise
        run = runner.run_output(info.source, timeout)
        self._exchange_done = True
        self._send_next_ahead(runner, timeout)
        printed = mprules.normalize_output(run.stdout + run.stderr)
        if run.too_large:
            _skip("too large: the file does not compile in the board's RAM")
        if printed in (b"SKIP\n", b"SKIP-TOO-LARGE\n") and not run.crashed:
            _skip("it printed SKIP" if printed == b"SKIP\n" else "too large (SKIP-TOO-LARGE)")
        verdict = mprules.unittest_verdict(printed)
        if verdict is not None and not run.crashed:
            if verdict:
                return
            raise BoardTestFailure(
                "the unittest run on the board failed:\n" + printed.decode("utf-8", "replace")
            )
        want = mprules.normalize_expected(expected)
        got = printed
        if rel is not None and rel in mprules.REGEX_OUTPUT and exp is not None:
            got = mprules.match_regex_output(printed, want)
        if got == want and not run.crashed:
            return
        if run.crashed:
            text = run.stderr.decode("utf-8", "replace").strip()
            last = text.splitlines()[-1:]
            cleaned = clean_board_traceback(text, self.path, _display(self))
            frames = [ln for ln in cleaned.splitlines() if ln.lstrip().startswith("File ")]
            if last and last[0].startswith("SyntaxError") and not any(", in " in f for f in frames):
                # the file itself does not compile (not an exec() inside it)
                cpython = (
                    f"; CPython says {info.host_syntax_error}" if info.host_syntax_error else ""
                )
                raise BoardTestFailure(
                    f"{_display(self)}: {last[0]} (the board cannot compile the file{cpython})"
                )
        shown_out = mprules.normalize_output(run.stdout)
        if run.crashed:
            tb = clean_board_traceback(
                run.stderr.decode("utf-8", "surrogateescape"), self.path, _display(self)
            )
            shown = shown_out.decode("utf-8", "surrogateescape") + tb + "\n"
        else:
            shown = shown_out.decode("utf-8", "surrogateescape")
        source = exp.name if exp is not None else f"CPython {sys.version.split()[0]}"
        diff = "".join(
            difflib.unified_diff(
                want.decode("utf-8", "surrogateescape").splitlines(keepends=True),
                shown.splitlines(keepends=True),
                fromfile=f"expected ({source})",
                tofile="printed by the board",
            )
        )
        what = "raised an exception" if run.crashed else "printed other output than expected"
        flaky = mprules.FLAKY.get(rel or "")
        if flaky is not None:
            pytest.xfail(f"known flaky in run-tests.py: {flaky[0]}")
        raise BoardTestFailure(f"{_display(self)} {what}:\n{diff}")

    def _run_unit(self, info: BoardFileInfo, test: UnitTest) -> None:
        from pytest_mpsession.boardtests.runner import clean_board_traceback

        runner = self._runner()
        file = self.file
        _note_runner(file, runner)
        if test.cls is not None and isinstance(self.parent, BoardTestClass):
            _note_runner(self.parent, runner)
        module = self.path.stem
        result = runner.run_unit(
            str(self.path), info.source, module, test.cls, test.name, _timeout(self.config),
            literal=info.exits_at_top,
            set_up_class="setUpClass" in info.class_hooks.get(test.cls or "", ()),
        )  # fmt: skip
        self._exchange_done = True
        if result.output:
            self.add_report_section("call", "board output", result.output)
        if result.outcome == "passed":
            return
        if result.outcome == "skipped":
            _skip(result.reason or "skipped on the board")
        if result.traceback:
            tb = clean_board_traceback(
                result.traceback, self.path, _display(self), verbatim=True,
                load=result.exc_line.startswith("the test module failed to load"),
            )  # fmt: skip
            raise BoardTestFailure(f"{result.exc_line}\n\nboard traceback:\n{tb}")
        raise BoardTestFailure(result.exc_line)

    def repr_failure(
        self, excinfo: ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        """A board test's failure is its message (diff or board traceback), not host frames."""
        from pytest_mpsession.errors import MpSessionError

        err = excinfo.value
        if isinstance(err, BoardTestFailure):
            return str(err)
        if isinstance(err, pytest.fail.Exception):  # pytest-timeout's, pytest.fail()
            return str(err.msg)
        if isinstance(err, MpSessionError):  # what happened to the board, in its one line
            return f"{type(err).__name__}: {err}"
        return super().repr_failure(excinfo, style=style)


class _OutputPlan(NamedTuple):
    """An output test's path under MicroPython's ``tests/`` (None elsewhere), its ``.exp``
    file (None: CPython's output) and the expected output."""

    rel: str | None
    exp: Path | None
    expected: bytes


def _runs_next_unchanged(item: BoardTestItem, nxt: BoardTestItem) -> bool:
    """Whether ``nxt``, an output test, reaches this board right after ``item`` with nothing
    in between that uses or changes it: no reset after ``item`` (``--mp-reset``/``mp_reset``
    of none or clean, its session untouched), no marker on ``nxt`` whose check could skip
    it, no other hook taking its session, one board in this process, and a run that goes
    on whatever ``item``'s verdict (no ``--maxfail``/``-x``/``--stepwise``)."""
    from pytest_mpsession.farm.hooks import get_farm
    from pytest_mpsession.farm.requirements import BOARD_INDEX
    from pytest_mpsession.plugin.recovery import reset_policy
    from pytest_mpsession.plugin.state import get_state

    config = item.config
    if nxt.test is not None or nxt.file.info.error is not None or nxt is item:
        return False
    state = get_state(config)
    if state is None or state.board is None or state.board.manager is not item.manager_:
        return False
    if state.fault is not None or state.broken is not None:
        return False
    policy = reset_policy(item, state.settings.reset)
    if policy not in ("clean", "none") or next(nxt.iter_markers(), None) is not None:
        return False
    if config.getoption("maxfail", 0) or config.getoption("stepwise", False):
        return False
    farm = get_farm(config)
    if nxt.stash.get(BOARD_INDEX, None) is not None or (farm is not None and len(farm.boards) > 1):
        return False  # a matrix board, or a process routing to several
    hook = config.hook
    return not (
        hook.pytest_mpsession_session_start.get_hookimpls()
        or hook.pytest_mpsession_session_finish.get_hookimpls()
    )


def _pytest_timeout(item: pytest.Item) -> float | None:
    """pytest-timeout's limit for ``item`` in seconds (its marker, else what
    ``--timeout``, the ini file or ``PYTEST_TIMEOUT`` set), or None without one."""
    if not item.config.pluginmanager.has_plugin("timeout"):
        return None
    mark = item.get_closest_marker("timeout")
    value: Any
    if mark is not None:
        value = mark.args[0] if mark.args else mark.kwargs.get("timeout")
    else:
        value = getattr(item.config, "_env_timeout", None)  # pytest-timeout's resolved one
    try:
        limit = float(value)
    except (TypeError, ValueError):
        return None
    return limit if limit > 0 else None


def _skip(reason: str) -> None:
    """Skip, reported at the test's own file and line (not this module's)."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def _target_info(runner: BoardRunner, root: Path, timeout: float) -> mprules.TargetInfo:
    """What run-tests.py's feature checks find on this board (once per runner and tree)."""
    cache: dict[Path, mprules.TargetInfo] = runner.__dict__.setdefault("_target_info", {})
    known = cache.get(root)
    if known is not None:
        return known
    checks = root / "feature_check"
    info = mprules.TargetInfo()

    def run(name: str) -> bytes:
        path = checks / name
        if not path.is_file():
            return b""
        result = runner.run_output(path.read_bytes(), timeout)
        return mprules.normalize_output(result.stdout + result.stderr)

    fields = run("target_info.py").split()
    if len(fields) == 8:
        info.platform = fields[0].decode()
        info.thread = None if fields[4] == b"None" else fields[4].decode()
        info.float_prec = int(fields[5])
        info.unicode = fields[6] == b"True"
        info.error_reporting = fields[7].decode()
    for name, want in mprules.FEATURE_CHECKS.items():
        if (checks / name).is_file():
            info.checks[name] = run(name) == want
    info.no_revops = run("reverse_ops.py") == b"TypeError\n"
    info.same_byteorder = run("byteorder.py").strip() == sys.byteorder.encode()
    info.inlineasm = bool(run("inlineasm.py").strip().split(b",")[0])
    cache[root] = info
    return info
