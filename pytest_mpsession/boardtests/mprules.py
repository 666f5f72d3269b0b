"""The verdict rules of MicroPython's ``tests/run-tests.py`` for a board (``-t port:...``).

On the files that run-tests.py runs on a board, an output test here must get its verdict:
the same files pass, fail and skip. This module holds those rules, restated from
run-tests.py (commit 1c3c201) as data and small functions, with no I/O:

- the output is normalised as run-tests.py does (``\\r\\r\\n`` and ``\\r\\n`` become ``\\n``;
  a lone ``\\r`` stays), and so is the expected output (``\\r\\n`` becomes ``\\n``);
- ``SKIP`` and ``SKIP-TOO-LARGE`` outputs skip; a file that raised (run-tests.py appends
  ``CRASH``) fails, except a ``MemoryError`` before it printed anything (too large: skip);
- an output ending in a ``unittest`` summary passes or fails by that summary;
- a few files' ``.exp`` lines are regular expressions (``tests_with_regex_output``);
- run-tests.py skips some files on some boards without running them: by name when the board
  lacks a feature (``int_big*`` without big integers, ``*_endian`` on another byte order, ...),
  and from its per-target lists. These apply only to files inside a MicroPython ``tests/``
  tree (a folder holding ``run-tests.py``), with the path relative to it (``basics/x.py``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "TargetInfo",
    "feature_skip",
    "match_regex_output",
    "micropython_tests_root",
    "normalize_expected",
    "normalize_output",
    "unittest_verdict",
]

PC_PLATFORMS = ("darwin", "linux", "win32")

#: run-tests.py's ``platform_tests_to_skip`` (sys.platform -> files)
PLATFORM_SKIPS: dict[str, tuple[str, ...]] = {
    "esp8266": ("stress/list_sort.py",),
    "minimal": (
        "basics/class_inplace_op.py",
        "basics/subclass_native_init.py",
        "micropython/opt_level.py",
    ),
    "nrf": (
        "basics/io_buffered_writer.py",
        "basics/io_bytesio_cow.py",
        "basics/io_bytesio_ext.py",
        "basics/io_bytesio_ext2.py",
        "basics/io_iobase.py",
        "basics/io_stringio1.py",
        "basics/io_stringio_base.py",
        "basics/io_stringio_with.py",
        "basics/io_write_ext.py",
        "basics/memoryview1.py",
        "extmod/random_basic.py",
        "micropython/opt_level.py",
        "misc/non_compliant.py",
    ),
    "renesas-ra": ("extmod/time_time_ns.py",),
    "rp2": (
        "thread/stress_heap.py",
        "thread/thread_lock2.py",
        "thread/thread_lock3.py",
        "thread/thread_shared2.py",
    ),
    "webassembly": (
        "basics/string_format_modulo.py",
        "basics/string_strip.py",
        "basics/weakref_callback_exception.py",
        "basics/weakref_ref_collect.py",
        "basics/weakref_finalize_collect.py",
    ),
    "WiPy": ("misc/print_exception.py",),
    "zephyr": ("thread/stress_heap.py", "thread/thread_lock3.py"),
}

#: ``error_reporting_tests_to_skip``
_TERSE = (
    "cmdline/repl_paste.py",
    "extmod/vfs_blockdev_invalid.py",
    "micropython/heapalloc_exc_compressed.py",
    "micropython/heapalloc_exc_compressed_emg_exc.py",
    "micropython/opt_level_lineno.py",
    "misc/print_exception.py",
    "misc/sys_settrace_features.py",
)
ERROR_REPORTING_SKIPS: dict[str, tuple[str, ...]] = {
    "terse": _TERSE,
    "none": (*_TERSE, "extmod/asyncio_gather_notimpl.py"),
}

#: skipped on boards that are not a PC (run-tests.py: "Some tests shouldn't be run on pyboard")
NOT_PC_SKIPS = (
    "basics/exception_chain.py",
    "micropython/meminfo.py",
    "unicode/file1.py",
    "unicode/file2.py",
    "unicode/file_invalid.py",
)

#: ``tests_requiring_slice`` (the basics/ part; the rest is in other folders)
SLICE_FILES = (
    "basics/builtin_range.py",
    "basics/bytearray1.py",
    "basics/class_super.py",
    "basics/containment.py",
    "basics/errno1.py",
    "basics/fun_str.py",
    "basics/generator1.py",
    "basics/globals_del.py",
    "basics/memoryview1.py",
    "basics/memoryview_gc.py",
    "basics/object1.py",
    "basics/python34.py",
    "basics/struct_endian.py",
    "float/string_format_modulo.py",
    "misc/non_compliant.py",
    "misc/rge_sm.py",
)

#: ``tests_with_regex_output``
REGEX_OUTPUT = (
    "micropython/meminfo.py",
    "basics/bytes_compare3.py",
    "basics/builtin_help.py",
    "basics/weakref_callback_exception.py",
    "misc/sys_settrace_cov.py",
    "net_inet/tls_text_errors.py",
    "ports/unix/extra_coverage.py",
    "thread/thread_exc2.py",
    "ports/esp32/partition_ota.py",
)

#: ``flaky_tests_to_ignore``: failures are "ignored" (reported here as xfail)
FLAKY: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "thread/thread_gc1.py": ("GC race condition", None),
    "thread/stress_schedule.py": ("intermittent crash under QEMU", None),
    "thread/stress_recurse.py": ("stack overflow under emulation", None),
    "thread/stress_heap.py": ("flaky on macOS", ("darwin",)),
    "cmdline/repl_lock.py": ("REPL timing under QEMU", None),
    "cmdline/repl_cont.py": ("REPL escaping on macOS", ("darwin",)),
    "extmod/time_time_ns.py": ("CI runner clock precision", None),
}

#: the feature checks run-tests.py runs on the board: script -> output when present
FEATURE_CHECKS: dict[str, bytes] = {
    "native_check.py": b"native\n",
    "int_big.py": b"1000000000000000000000000000000000000000000000\n",
    "int_64.py": b"4611686018427387904\n",
    "bytearray.py": b"bytearray\n",
    "set_check.py": b"{1}\n",
    "slice.py": b"slice\n",
    "async_check.py": b"async\n",
    "const.py": b"1\n",
    "fstring.py": b"a=1\n",
    "tstring.py": b"tstring\n",
    "complex.py": b"complex\n",
}


@dataclass
class TargetInfo:
    """What run-tests.py learns about a board before running any test."""

    platform: str = ""
    float_prec: int = 64
    unicode: bool = True
    error_reporting: str = "detailed"
    thread: str | None = None
    inlineasm: bool = False
    #: feature check script -> True when the board printed the expected output
    checks: dict[str, bool] = field(default_factory=dict)
    #: False when the board's ``byteorder.py`` output differs from CPython's
    same_byteorder: bool = True
    #: True when ``reverse_ops.py`` printed ``TypeError``
    no_revops: bool = False

    def has(self, check: str) -> bool:
        """Whether the board passed feature check ``check`` (unknown: yes)."""
        return self.checks.get(check, True)


def micropython_tests_root(path: Path) -> Path | None:
    """The MicroPython ``tests/`` folder ``path`` is in (the folder of ``run-tests.py``)."""
    return _tests_root(path.parent)


@functools.lru_cache(maxsize=256)
def _tests_root(folder: Path) -> Path | None:
    for parent in (folder, *folder.parents):
        if (parent / "run-tests.py").is_file() and (parent / "feature_check").is_dir():
            return parent
    return None


def feature_skip(rel: str, target: TargetInfo) -> str | None:
    """Why run-tests.py would skip ``rel`` (``basics/x.py``) on this board without running
    it, or None."""
    name = rel.rsplit("/", 1)[-1].removesuffix(".py")
    by_name = (
        ("native_check.py", name.startswith(("native_", "viper_")), "native code emitters"),
        ("int_big.py", name.startswith("int_big") or name.endswith("_intbig")
         or name.startswith("ffi_int"), "big integers"),
        ("int_64.py", name.startswith("int_64") or name.endswith("_int64"), "64-bit integers"),
        ("bytearray.py", name.startswith("bytearray") or name.endswith("_bytearray"),
         "bytearray"),
        ("set_check.py", name.startswith(("set_", "frozenset")) or name.endswith("_set"),
         "sets"),
        ("slice.py", "slice" in name, "slice"),
        ("async_check.py", name.startswith(("async_", "asyncio_")) or name.endswith("_async"),
         "async/await"),
        ("const.py", name.startswith("const"), "const()"),
        ("fstring.py", name.startswith("string_fstring") or name.endswith("_fstring"),
         "f-strings"),
        ("tstring.py", name.startswith("string_tstring") or name.endswith("_tstring"),
         "t-strings"),
    )  # fmt: skip
    for check, matches, what in by_name:
        if matches and not target.has(check):
            return f"run-tests.py skips it: the board has no {what} ({check})"
    if name.endswith("_endian") and not target.same_byteorder:
        return "run-tests.py skips it: the board's byte order is not the host's"
    if target.no_revops and "reverse_op" in name:
        return "run-tests.py skips it: the board has no __rOP__ methods"
    if name.startswith("asm") and not target.inlineasm:
        return "run-tests.py skips it: the board has no inline assembler"
    if not target.has("slice.py") and rel in SLICE_FILES:
        return "run-tests.py skips it: the board has no slice"
    if rel in PLATFORM_SKIPS.get(target.platform, ()):
        return f"run-tests.py skips it on {target.platform} boards"
    if target.platform not in PC_PLATFORMS and rel in NOT_PC_SKIPS:
        return "run-tests.py skips it on boards that are not a PC"
    if rel in ERROR_REPORTING_SKIPS.get(target.error_reporting, ()):
        return f"run-tests.py skips it at error reporting level {target.error_reporting}"
    if target.float_prec == 0 and rel.startswith("float/"):
        return "run-tests.py skips it: the board has no float"
    if not target.unicode and rel == "extmod/json_loads.py":
        return "run-tests.py skips it: the board has no unicode"
    if target.thread == "unsafe" and rel.startswith("thread/mutate_"):
        return "run-tests.py skips it: the board's threads are unsafe"
    return None


def normalize_output(data: bytes) -> bytes:
    """The board's output as run-tests.py compares it: ``\\r\\r\\n`` (a PTY's double
    conversion) and ``\\r\\n`` become ``\\n``; a lone ``\\r`` is content and stays."""
    return data.replace(b"\r\r\n", b"\n").replace(b"\r\n", b"\n")


def normalize_expected(data: bytes) -> bytes:
    """The expected output (``.exp`` or CPython's) as run-tests.py compares it."""
    return data.replace(b"\r\n", b"\n")


def _line_pattern(line: bytes) -> re.Pattern[bytes]:
    """An ``.exp`` line of a regex-output test as a pattern: ``\\x`` means a literal ``x``
    made special (``\\.\\+`` is ``.+``), the other regex characters are literal, and the
    newline may have carriage returns before it."""
    out: list[str] = []
    escaped = False
    for ch in line.decode("utf-8"):
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "()[]{}.*+^$":
            out.append("\\" + ch)
        else:
            out.append(ch)
    if out and out[-1] == "\n":
        out[-1] = "\r*\n"
    return re.compile("".join(out).encode("utf-8"))


def match_regex_output(output: bytes, expected: bytes) -> bytes:
    """``output`` with each line that matches its ``.exp`` pattern replaced by that pattern
    line (``########`` in the ``.exp`` skips any number of lines), as run-tests.py does for
    its regex-output tests; compare the result with ``expected``."""
    exp_lines = expected.splitlines(keepends=True)
    patterns: list[re.Pattern[bytes] | None] = [
        None if line == b"########\n" else _line_pattern(line) for line in exp_lines
    ]
    lines = [line + b"\n" for line in output.split(b"\n")]
    if output.endswith(b"\n"):
        lines = lines[:-1]
    at = 0
    for i, line in enumerate(exp_lines):
        if at >= len(lines):
            break
        if patterns[i] is None:
            nxt = patterns[i + 1] if i + 1 < len(patterns) else None
            skip = 0
            while at + skip < len(lines) and not (nxt is not None and nxt.match(lines[at + skip])):
                skip += 1
            if at + skip >= len(lines):
                lines[at] = b"######## FAIL\n"
                break
            del lines[at : at + skip]
            lines.insert(at, b"########\n")
            at += 1
        else:
            pattern = patterns[i]
            if pattern is not None and pattern.match(lines[at]):
                lines[at] = line
            at += 1
    return b"".join(lines)


_RAN = re.compile(rb"Ran (\d+) tests$")
_RESULT = re.compile(rb"((OK)( \(skipped=(\d+)\))?|(FAILED) \(failures=(\d+), errors=(\d+)\))$")


def unittest_verdict(output: bytes) -> bool | None:
    """When ``output`` ends with a ``unittest`` summary: True (OK) or False (FAILED), as
    run-tests.py decides; None when it does not."""
    lines: Sequence[bytes] = output.splitlines()
    if len(lines) > 4 and lines[-4] == b"-" * 70 and lines[-2] == b"":
        ran = _RAN.match(lines[-3])
        result = _RESULT.match(lines[-1])
        if ran and result:
            return result.group(2) == b"OK"
    return None
