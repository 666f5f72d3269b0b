"""pytest glue of tests that run on the board: the option, the ini key and collection.

``--mp-board-tests PATH`` (repeatable) and ``mp_board_tests`` (paths or globs, one a line,
relative to the ini file) name files, and folders of ``.py`` files, that run on the board.
Wherever collection meets such a file it becomes a :class:`~.items.BoardTestFile` (never a
Python module: it is not imported). Paths given with ``--mp-board-tests`` are also added to
what pytest collects; the ini key's paths too when pytest runs without test paths of its own
(as ``testpaths`` are), so a plain ``pytest`` runs them beside the host tests.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["HELP_BOARD_TESTS", "BoardTestPaths"]

HELP_BOARD_TESTS = (
    "files, or folders of .py files, that run on the board (MicroPython's tests/ form with "
    ".exp files, or unittest-style modules); read on the host, never imported. Repeatable; "
    "the ini key takes paths or globs, one a line, relative to the ini file."
)


@dataclass
class BoardTestPaths:
    """The board test files and folders of this run (absolute, resolved)."""

    files: set[Path] = field(default_factory=set)
    folders: list[Path] = field(default_factory=list)
    #: per folder met in collection: (its real path, whether it is in a board test folder);
    #: collection asks for every file of a folder, and resolving each file's path anew cost
    #: every pytest process (each xdist worker collects everything) a few lstat calls a file
    _seen: dict[Path, tuple[Path, bool]] = field(default_factory=dict, repr=False)

    def contains(self, path: Path) -> bool:
        """Whether ``path`` is a board test file."""
        if path.suffix != ".py" or path.name in ("conftest.py", "__init__.py"):
            return False
        seen = self._seen.get(path.parent)
        if seen is None:
            parent = path.parent.resolve()
            inside = any(f == parent or f in parent.parents for f in self.folders)
            seen = self._seen[path.parent] = (parent, inside)
        if path.is_symlink():  # a file linked from elsewhere: where it really is counts
            real = path.resolve()
            if real in self.files:
                return True
            return any(f == real.parent or f in real.parents for f in self.folders)
        return seen[1] or (seen[0] / path.name) in self.files

    def add(self, path: Path) -> None:
        """Add a file or a folder."""
        real = path.resolve()
        if real.is_dir():
            self.folders.append(real)
        else:
            self.files.add(real)
        self._seen.clear()


_PATHS = pytest.StashKey[BoardTestPaths]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--mp-board-tests`` in the ``mpsession`` group, and the ini key."""
    from pytest_mpsession.plugin.options import option_group

    group = option_group(parser)
    group.addoption(
        "--mp-board-tests",
        action="append",
        dest="mp_board_tests",
        metavar="PATH",
        default=None,
        help=HELP_BOARD_TESTS,
    )
    parser.addini("mp_board_tests", HELP_BOARD_TESTS, type="linelist", default=[])


def _has_magic(text: str) -> bool:
    return glob.has_magic(text)


def resolve_paths(config: pytest.Config) -> tuple[BoardTestPaths, list[str]]:
    """(the board test paths, the command line's ones as collection arguments); a path that
    does not exist is a :class:`pytest.UsageError` naming it and where it came from."""
    paths = BoardTestPaths()
    extra: list[str] = []
    here = config.invocation_params.dir
    for raw in config.getoption("mp_board_tests", None) or []:
        path = Path(os.path.expanduser(raw))
        path = path if path.is_absolute() else here / path
        if not path.exists():
            raise pytest.UsageError(
                f"mpsession: --mp-board-tests {raw}: no such file or folder (give a board "
                "test file or a folder of them)"
            )
        paths.add(path)
        extra.append(str(path))
    lines = [line.strip() for line in config.getini("mp_board_tests") or []]
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    where = config.inipath.name if config.inipath is not None else "the ini file"
    for line in lines:
        if not line or line.startswith("#"):
            continue
        pattern = os.path.expanduser(line)
        full = pattern if os.path.isabs(pattern) else str(base / pattern)
        if _has_magic(line):
            found = sorted(glob.glob(full, recursive=True))
            if not found:
                raise pytest.UsageError(
                    f"mpsession: mp_board_tests in {where}: {line!r} matches no file or folder "
                    f"(relative to {base})"
                )
        else:
            if not os.path.exists(full):
                raise pytest.UsageError(
                    f"mpsession: mp_board_tests in {where}: {line!r}: no such file or folder "
                    f"(relative to {base})"
                )
            found = [full]
        for item in found:
            paths.add(Path(item))
            if config.args_source != pytest.Config.ArgsSource.ARGS:
                extra.append(item)
    return paths, extra


def _covered(path: str, args: list[str], here: Path) -> bool:
    """Whether pytest already collects ``path`` through one of ``args``."""
    real = Path(path).resolve()
    for arg in args:
        base = Path(arg.split("::", 1)[0])
        base = (base if base.is_absolute() else here / base).resolve()
        if base == real or base in real.parents:
            return True
    return False


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the board test paths and add them to what pytest collects."""
    if config.getoption("help", False) or config.getoption("version", False):
        return
    paths, extra = resolve_paths(config)
    config.stash[_PATHS] = paths
    here = config.invocation_params.dir
    args = list(config.args)
    for path in extra:
        if not _covered(path, args, here):
            args.append(path)
    if args != list(config.args):
        config.args[:] = args


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(
    file_path: Path, parent: pytest.Collector
) -> Generator[None, list[pytest.Collector], list[pytest.Collector]]:
    """A board test file is a :class:`BoardTestFile`, never a Python module."""
    result = yield
    paths = parent.config.stash.get(_PATHS, None)
    if paths is None or not paths.contains(file_path):
        return result
    from pytest_mpsession.boardtests.items import BoardTestFile

    kept = [r for r in result if not isinstance(r, pytest.Module)]
    kept.append(BoardTestFile.from_parent(parent, path=file_path))
    return kept


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """A board test learns which test pytest runs after it (the next output test may start
    on the board early: see ``BoardTestItem._send_next_ahead``)."""
    from pytest_mpsession.boardtests.items import BoardTestItem

    if isinstance(item, BoardTestItem):
        item.next_item = nextitem
        item.started = time.monotonic()  # (as pytest-timeout's clock starts)
