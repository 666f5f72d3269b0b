"""Reading a board test file on the host: its kind, its tests and its requirements.

Nothing here imports or runs the file: it is read as bytes and parsed with :mod:`ast` (a
board file that does ``import machine`` is just text to the host). What a file is:

- an **output test** when ``NAME.py.exp`` is beside it, or when it has no tests of its own;
- a **unit-test file** when it has top-level ``test_*`` functions or classes derived from
  ``unittest.TestCase`` (directly, or through another class of the same file).

Module-level literal assignments ``requires_feature``, ``requires_platform`` and
``requires_firmware`` are the file's requirements (the markers of the same names).
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "REQUIREMENT_NAMES",
    "BoardFileInfo",
    "UnitTest",
    "read_board_file",
]

#: module-level names read as markers
REQUIREMENT_NAMES = ("requires_feature", "requires_platform", "requires_firmware", "mp_reset")


@dataclass(frozen=True)
class UnitTest:
    """One unit test of a file: ``cls`` is None for a top-level ``test_*`` function."""

    name: str
    cls: str | None
    lineno: int


@dataclass
class BoardFileInfo:
    """What the host knows of one board test file without running it."""

    path: Path
    source: bytes = b""
    #: "output" or "unit"
    kind: str = "output"
    tests: list[UnitTest] = field(default_factory=list)
    #: requirement name -> its values (strings), from module-level literal assignments
    requirements: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: a one-line reason the file cannot run (syntax error, unreadable, bad requirement)
    error: str | None = None
    #: the line of ``error`` in the file, where there is one
    error_line: int | None = None
    #: the host's CPython could not parse the file ("line N: message"): it runs as an output
    #: test, and the board's compiler has the last word
    host_syntax_error: str | None = None
    #: class -> the class-level hooks it (or a base of this file) defines: setUpClass,
    #: tearDownClass (the runner calls only those)
    class_hooks: dict[str, set[str]] = field(default_factory=dict)
    #: the module may raise SystemExit at its top level (``print("SKIP"); raise SystemExit``)
    exits_at_top: bool = False


def _literal_strings(node: ast.expr, path: Path, name: str) -> tuple[str, ...]:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        raise ValueError(
            f"{path.name}:{node.lineno}: {name} must be a literal string or a tuple of "
            "strings (it is read on the host, without running the file)"
        ) from None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (tuple, list)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise ValueError(
        f"{path.name}:{node.lineno}: {name} = {value!r}: give a string or a non-empty tuple "
        "of strings"
    )


def _base_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _test_classes(tree: ast.Module) -> list[ast.ClassDef]:
    """Top-level classes derived from ``TestCase`` (``unittest.TestCase``, or a class of
    this file that is one)."""
    cases: dict[str, ast.ClassDef] = {}
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    changed = True
    while changed:
        changed = False
        for cls in classes:
            if cls.name in cases:
                continue
            if any(_base_name(b) == "TestCase" or _base_name(b) in cases for b in cls.bases):
                cases[cls.name] = cls
                changed = True
    return [c for c in classes if c.name in cases]


def _methods(cls: ast.ClassDef, by_name: dict[str, ast.ClassDef]) -> list[tuple[str, int]]:
    """``test*`` methods of ``cls`` in definition order, inherited ones of classes of this
    file first (as unittest's ``getTestCaseNames`` finds them, but in source order)."""
    seen: dict[str, int] = {}
    for base in cls.bases:
        parent = by_name.get(_base_name(base))
        if parent is not None and parent is not cls:
            for name, line in _methods(parent, by_name):
                seen.setdefault(name, line)
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith(
            "test"
        ):
            seen[node.name] = node.lineno
    return list(seen.items())


def _takes_no_arguments(node: ast.FunctionDef) -> bool:
    args = node.args
    required = len(args.posonlyargs) + len(args.args) - len(args.defaults)
    return required == 0 and all(d is not None for d in args.kw_defaults)


def _called_at_top(tree: ast.Module) -> set[str]:
    """Names of functions the module calls itself, outside any function (a script that
    defines ``test_x(...)`` and runs it is an output test, not a unit test)."""
    called: set[str] = set()
    todo: list[ast.AST] = [n for n in tree.body if not isinstance(n, ast.FunctionDef)]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        todo.extend(ast.iter_child_nodes(node))
    return called


def _class_hooks(cls: ast.ClassDef, classes: dict[str, ast.ClassDef]) -> set[str]:
    hooks: set[str] = set()
    seen: set[str] = set()
    todo = [cls]
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name in ("setUpClass", "tearDownClass"):
                hooks.add(item.name)
        todo.extend(classes[_base_name(b)] for b in node.bases if _base_name(b) in classes)
    return hooks


_COMPOUND = (ast.If, ast.Try, ast.For, ast.While, ast.With)


def _exits_at_top(tree: ast.Module) -> bool:
    """Whether module-level code (outside functions and classes) raises SystemExit or calls
    ``sys.exit`` (statements only: an exit hidden in an expression is not looked for)."""
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "SystemExit":
                return True
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and func.attr == "exit":
                return True
        elif isinstance(node, _COMPOUND):
            for name in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, name, []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)
    return False


def _requirement_lines(source: bytes) -> list[ast.stmt]:
    """The requirement assignments of a file read without parsing it whole: each top-level
    ``requires_x = ...`` parsed on its own (with the lines it continues on, up to 20)."""
    found: list[ast.stmt] = []
    lines = source.decode("utf-8", "replace").splitlines()
    for index, line in enumerate(lines):
        if not line.startswith(REQUIREMENT_NAMES):
            continue
        for end in range(index + 1, min(index + 21, len(lines) + 1)):
            try:
                stmt = ast.parse("\n".join(lines[index:end])).body
            except SyntaxError:
                continue
            for node in stmt:
                node.lineno = index + 1
                found.append(node)
            break
    return found


#: what a unit-test file has that an output test (almost) never has: without one of these the
#: file is an output test, and CPython does not need to parse it
_UNIT_HINTS = re.compile(rb"^(def test_|class \w+\(.*TestCase)", re.M)


def read_board_file(path: Path) -> BoardFileInfo:
    """Read and classify ``path``; problems are reported in ``error``, never raised."""
    info = BoardFileInfo(path=path)
    try:
        info.source = path.read_bytes()
    except OSError as exc:
        info.error = f"cannot read {path}: {exc.strerror or exc}"
        return info
    has_exp = Path(str(path) + ".exp").is_file()
    if has_exp or not _UNIT_HINTS.search(info.source):
        # an output test: only its requirements are read, the board compiles it
        for node in _requirement_lines(info.source):
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
                try:
                    info.requirements[node.targets[0].id] = _literal_strings(
                        node.value, path, node.targets[0].id
                    )
                except ValueError as exc:
                    info.error = str(exc)
                    info.error_line = node.lineno
                    return info
        return info
    try:
        with warnings.catch_warnings():
            # board code may use escapes CPython warns about ("\\z"): not the host's business
            warnings.simplefilter("ignore")
            tree: ast.Module | None = ast.parse(info.source, filename=str(path))
    except SyntaxError as exc:
        # MicroPython syntax this CPython lacks (t-strings, ...), or a real syntax error:
        # the board decides, as an output test.
        info.host_syntax_error = f"line {exc.lineno}: {exc.msg}"
        tree = None
    except ValueError as exc:  # null bytes
        info.error = f"{path.name}: cannot be read as Python source: {exc}"
        return info
    statements = tree.body if tree is not None else _requirement_lines(info.source)
    for node in statements:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in REQUIREMENT_NAMES:
            try:
                info.requirements[target.id] = _literal_strings(node.value, path, target.id)
            except ValueError as exc:
                info.error = str(exc)
                info.error_line = node.lineno
                return info
    if tree is None:
        return info
    info.exits_at_top = _exits_at_top(tree)
    if has_exp:
        return info
    called = (
        _called_at_top(tree)
        if any(isinstance(n, ast.FunctionDef) and n.name.startswith("test_") for n in tree.body)
        else set()
    )
    for node in tree.body:
        if (
            isinstance(node, ast.FunctionDef)
            and node.name.startswith("test_")
            and _takes_no_arguments(node)
            and node.name not in called
        ):
            info.tests.append(UnitTest(node.name, None, node.lineno))
    classes = _test_classes(tree)
    by_name = {c.name: c for c in classes}
    all_classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}
    for cls in classes:
        for name, line in _methods(cls, by_name):
            info.tests.append(UnitTest(name, cls.name, line))
        info.class_hooks[cls.name] = _class_hooks(cls, all_classes)
    if info.tests:
        info.kind = "unit"
    return info
