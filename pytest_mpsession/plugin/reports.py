"""What the run reports about the boards: the header lines, the JUnit suite properties, a
failed device test's board traceback at the user's lines, and the terminal summary (the
boards of the xdist workers, the device tests skipped because a board broke).
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_mpsession.plugin.boards import (
    NO_BOARD_REASON,
    Board,
    Progress,
    is_xdist_controller,
    prepare_boards,
    shared_port,
)
from pytest_mpsession.plugin.state import get_state

__all__ = ["board_traceback", "record_board"]


# -- a failed device test: the board's traceback ---------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Show a :class:`DeviceError` (or a board fault) as the board's traceback at the user's
    lines, not plugin frames."""
    report = yield
    excinfo = call.excinfo
    if excinfo is None or not report.failed:
        return report
    from pytest_mpsession.boardtests.items import BoardTestItem
    from pytest_mpsession.errors import BoardFault, DeviceError

    err = excinfo.value
    if not isinstance(err, (BoardFault, DeviceError)) or isinstance(item, BoardTestItem):
        return report  # (a board test says it in its one line: see its repr_failure)
    style = item.config.getoption("tbstyle", "auto")
    if style in ("auto", "long", "short") and not item.config.getoption("fulltrace", False):
        tb = _user_frames(excinfo.traceback, getattr(item, "path", None))
        report.longrepr = excinfo.getrepr(
            funcargs=True,
            style="short" if style == "short" else "long",
            tbfilter=lambda _excinfo: tb,
            showlocals=bool(item.config.getoption("showlocals", False)),
            truncate_locals=item.config.get_verbosity() <= 1,
            # a board fault says all there is in its one line: not the link error under it
            chain=not isinstance(err, BoardFault),
        )
        text = board_traceback(err, tb)
    else:
        text = board_traceback(err, excinfo.traceback)
    addsection = getattr(report.longrepr, "addsection", None)
    if text and callable(addsection):
        addsection("board traceback", text)
    return report


# pytest_mpsession/, whose frames (the plugin's and the session core's) are not the user's
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)


def _user_frames(tb: Any, test_path: Path | None) -> Any:
    """The traceback from the test's own file on, without frames inside pytest-mpsession
    (the plugin's and the session core's: the user wants their line, then the board's)."""
    entries = list(tb)
    if test_path is not None:
        for i, entry in enumerate(entries):
            if Path(str(entry.path)) == test_path:
                entries = entries[i:]
                break
    kept = [e for e in entries if not str(e.path).startswith(_PACKAGE_DIR)]
    return type(tb)(kept or entries)


_BOARD_FRAME = re.compile(r'^(\s*)File "<string>", line (\d+)(.*)$')


@dataclass(frozen=True)
class _CodeOrigin:
    """Where the board code of a failed call came from: a string literal in the test file."""

    path: str  #: the test file, relative to the current folder where possible
    call_line: int  #: the host line of the call that ran the code (1-based)
    first_line: int  #: the host line of the literal's first line
    code_lines: tuple[str, ...]  #: the code's own lines
    #: the literal's lines are the file's lines (a triple-quoted string, or one line): code
    #: line N is host line ``first_line + N - 1``
    verbatim: bool


def board_traceback(err: Any, tb: Any) -> str:
    """The board's traceback, with the frames of code the test passed as a string literal
    pointing at the test file: at the literal's own lines when they are the file's lines (a
    triple-quoted string), else at the line of the call, with the code's own line number
    (``"def g():\\n    return [][3]\\ng()"`` on one line has three lines of its own)."""
    text = str(getattr(err, "traceback", "") or "").replace("\r\n", "\n").rstrip()
    if not text:
        return ""
    origin = _literal_origin(tb)
    if origin is None:
        return text
    out: list[str] = []
    for line in text.split("\n"):
        match = _BOARD_FRAME.match(line)
        if match is None:
            out.append(line)
            continue
        indent, code_line, rest = match.group(1), int(match.group(2)), match.group(3)
        if origin.verbatim:
            where = f"line {origin.first_line + code_line - 1}"
        else:
            where = f"line {origin.call_line} (line {code_line} of the code given there)"
        out.append(f'{indent}File "{origin.path}", {where}{rest}')
        if 0 < code_line <= len(origin.code_lines) and origin.code_lines[code_line - 1].strip():
            out.append(f"{indent}  {origin.code_lines[code_line - 1].strip()}")
    return "\n".join(out)


def _literal_origin(tb: Any) -> _CodeOrigin | None:
    """Where the code came from, when the failing call in the test's last frame passed its
    board code as a single string literal (optionally ``dedent``-ed)."""
    if not len(tb):
        return None
    entry = tb[-1]
    try:
        path = Path(str(entry.path))
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source)
    except (OSError, SyntaxError, ValueError):
        return None
    lineno = entry.lineno + 1  # pytest's entries are 0-based
    literals: list[ast.Constant] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or node.end_lineno is None:
            continue
        if not node.lineno <= lineno <= node.end_lineno:
            continue
        for arg in node.args[:1]:
            if isinstance(arg, ast.Call) and arg.args:  # textwrap.dedent("""...""")
                arg = arg.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                literals.append(arg)
    if not literals:
        return None
    # The innermost call's literal is the code (calls nest: a longer span contains a shorter).
    lit = min(literals, key=lambda c: (c.end_lineno or c.lineno) - c.lineno)
    assert isinstance(lit.value, str)
    code_lines = tuple(lit.value.split("\n"))
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = str(path)
    return _CodeOrigin(
        path=rel,
        call_line=lineno,
        first_line=lit.lineno,
        code_lines=code_lines,
        verbatim=_lines_are_the_files(lit, code_lines, source.splitlines()),
    )


def _lines_are_the_files(
    lit: ast.Constant, code_lines: tuple[str, ...], source_lines: list[str]
) -> bool:
    """Whether the literal's line N is on the file's line ``lit.lineno + N - 1``, each of
    them: a triple-quoted string (no ``\\n`` escapes) or a one-line string without any."""
    physical = (lit.end_lineno or lit.lineno) - lit.lineno + 1
    lines = list(code_lines)
    if len(lines) == physical + 1 and lines[-1] == "":
        lines.pop()  # "x = 1\\n" on one line: its last, empty line is nowhere
    if len(lines) != physical:
        return False
    for offset, line in enumerate(lines):
        host = lit.lineno - 1 + offset
        if line.strip() and (host >= len(source_lines) or line.strip() not in source_lines[host]):
            return False
    return True


# -- the header, JUnit properties, the summary ----------------------------------------------


def _board_facts(board: Board) -> dict[str, str]:
    caps = board.capabilities
    return {
        "description": board.describe(),
        "firmware": caps.firmware_version if caps is not None else "",
        "platform": caps.device_type if caps is not None else "",
        "port": board.port,
        "worker": board.worker or "",
    }


def record_board(config: pytest.Config, board: Board) -> None:
    """JUnit suite properties for this process's board; on an xdist worker, the facts the
    controller needs to report it (a worker has no JUnit file of its own)."""
    facts = _board_facts(board)
    workeroutput = getattr(config, "workeroutput", None)
    if isinstance(workeroutput, dict):
        workeroutput["mpsession_board"] = facts
        return
    _junit_properties(config, facts)


#: the JUnit suite properties of a board, and the facts they hold
_PROPERTIES = (
    ("mpsession_firmware", "firmware"),
    ("mpsession_platform", "platform"),
    ("mpsession_port", "port"),
)


def _suite_property_recorder(config: pytest.Config) -> Callable[[str, object], None] | None:
    """The function pytest's public ``record_testsuite_property`` fixture gives a test: the
    junitxml plugin's ``add_global_property``, or ``None`` without ``--junitxml``.

    Looked up among the registered plugins, because the plugin records outside any test
    (and the xdist controller, which writes the file, runs no test at all)."""
    if not config.getoption("xmlpath", None):
        return None
    for plugin in config.pluginmanager.get_plugins():
        add = getattr(plugin, "add_global_property", None)
        if callable(add) and hasattr(plugin, "logfile"):  # the one writing the JUnit file
            return add  # type: ignore[no-any-return]
    return None


def _worker_order(item: tuple[str, object]) -> tuple[int, str]:
    """gw2 before gw10."""
    match = re.search(r"(\d+)$", item[0])
    return (int(match.group(1)) if match else -1, item[0])


def _junit_properties(config: pytest.Config, facts: dict[str, str]) -> None:
    """One board's suite properties, each value clean (``1.24.1``); under pytest-xdist the
    worker comes first, in a property of its own (``mpsession_worker`` = ``gw1``)."""
    record = _suite_property_recorder(config)
    if record is None:
        return
    if facts.get("worker"):
        record("mpsession_worker", facts["worker"])
    for name, key in _PROPERTIES:
        record(name, facts.get(key, ""))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One line per board: what it is, where, and what it can do. The boards are opened
    here, with a progress line each, when they were not yet (see ``boards.prepare_boards``)."""
    prepare_boards(config, Progress(config))
    state = get_state(config)
    if state is None or not state.settings.configured:
        # nothing to say in a project without boards (the plugin is in every run of the
        # environment): skipped device tests are counted in the terminal summary
        return None
    settings = state.settings
    if is_xdist_controller(config):
        if shared_port(settings.ports):
            return [f"mpsession: {settings.ports[0]}, one emulated board per pytest-xdist worker"]
        return [
            f"mpsession: a pool of {len(settings.ports)} boards, one per pytest-xdist worker: "
            + ", ".join(settings.ports)
        ]
    board = state.board
    if board is None:
        return None
    lines = [f"mpsession: {board.describe()}"]
    if board.capabilities is not None and config.get_verbosity() > 0:
        perf = board.capabilities.performance
        cached = " (capabilities from cache)" if board.from_cache else ""
        lines.append(
            f"mpsession: round trip {perf.round_trip_ms:.1f} ms, "
            f"{perf.write_bytes_per_s / 1000:.1f} kB/s to the board, "
            f"{perf.ops_per_s / 1000:.0f}k ops/s, {board.capabilities.memory_free} bytes free"
            f"{cached}"
        )
    return lines


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Record the board this process used in the JUnit properties (before the JUnit file is
    written; on an xdist worker, for the controller, before the worker reports back)."""
    state = get_state(session.config)
    if state is None:
        return
    board = state.board
    if board is not None and board.capabilities is not None:
        record_board(session.config, board)
    # the xdist controller: each worker's board, in the order of the workers
    for _worker, facts in sorted(state.worker_boards.items(), key=_worker_order):
        _junit_properties(session.config, facts)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: report each worker's board (JUnit properties, summary line)."""
    config = node.config
    state = get_state(config)
    output = getattr(node, "workeroutput", None)
    if state is None or not isinstance(output, dict):
        return
    broken = output.get("mpsession_broken")
    if isinstance(broken, dict):
        name = str(getattr(getattr(node, "gateway", None), "id", "?"))
        state.worker_broken[name] = (str(broken.get("reason")), int(broken.get("skipped", 0)))
    facts = output.get("mpsession_board")
    if not isinstance(facts, dict):
        return
    worker = str(facts.get("worker") or getattr(getattr(node, "gateway", None), "id", "?"))
    state.worker_boards[worker] = {**facts, "worker": worker}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Under pytest-xdist, the boards the workers used (their header lines are not shown);
    how many device tests were skipped because a board broke, or because there was none."""
    state = get_state(config)
    if state is None:
        return
    if not state.settings.configured:
        unboarded = sum(
            1
            for report in terminalreporter.stats.get("skipped", ())
            if isinstance(report.longrepr, tuple) and NO_BOARD_REASON in str(report.longrepr[-1])
        )
        if unboarded:
            tests = "test" if unboarded == 1 else "tests"
            terminalreporter.write_line(
                f"mpsession: no board: {unboarded} device {tests} skipped "
                "(use --mp-port PORT or --mp-mock)"
            )
        return
    for worker, facts in sorted(state.worker_boards.items(), key=_worker_order):
        terminalreporter.write_line(f"mpsession: {worker}: {facts.get('description', '')}")
    _summarize_escalations(terminalreporter)
    broken = dict(state.worker_broken)
    if state.broken is not None:
        broken[""] = (state.broken, state.broken_skips)
    for worker, (reason, skipped) in sorted(broken.items()):
        who = f"{worker}: " if worker else ""
        tests = "test" if skipped == 1 else "tests"
        terminalreporter.write_line(
            f"mpsession: {who}{skipped} device {tests} skipped: {reason}", red=True, bold=True
        )


def _summarize_escalations(terminalreporter: Any) -> None:
    """One line per test whose ``clean`` cleanup had to soft-reset the board (read from the
    teardown reports' user properties, so it works the same under pytest-xdist)."""
    from pytest_mpsession.plugin.recovery import ESCALATION_PROPERTY

    lines = []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "teardown":
                continue
            for key, value in getattr(report, "user_properties", ()):
                if key == ESCALATION_PROPERTY:
                    lines.append(f"mpsession: {report.nodeid}: cleanup escalated: {value}")
    for line in sorted(lines):
        terminalreporter.write_line(line, yellow=True)
