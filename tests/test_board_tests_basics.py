"""MicroPython's own ``tests/basics`` through ``--mp-board-tests``, judged against
``run-tests.py`` run on the same board in this module.

The board is the real MicroPython unix port behind a pseudo-terminal, with the line ends of a
board: run-tests.py waits for ``START TEST\\r\\n`` (a board's stdout turns ``\\n`` into
``\\r\\n``; the bare unix port does not), so the emulator serves the ``unix`` profile with
``crlf = true`` from a profiles file, and nothing else changed. run-tests.py runs unchanged
from ``../shared/micropython/tests`` (read-only: its results go to a temporary folder); the
plugin runs the same files once on that board and once on ``--mp-mock=unix``. At least 98% of
the files must get run-tests.py's verdict, and every difference is listed with its cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard

ROOT = Path(__file__).resolve().parent.parent
MP_TESTS = ROOT.parent / "shared" / "micropython" / "tests"
BASICS = MP_TESTS / "basics"

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not BASICS.is_dir() and not os.environ.get("CI"),
        reason=f"MicroPython's tests are not at {BASICS}",
    ),
]

#: files run-tests.py cannot run on a board without micropython-lib's ``unittest``: it stops
#: the whole run at the first one ("error: test ... requires unittest"), so they are left out
#: of its run with its own ``-e`` option; the plugin runs their tests with its own unittest.
NEEDS_UNITTEST = ("array_int_repr.py", "array_limits_intbig.py", "fun_code_lnotab.py")

#: why a file's verdict differs, where the cause is known (also in the README)
KNOWN_CAUSES = {
    **{
        name: "run-tests.py cannot run it on a board without unittest (it would stop the "
        "whole run, so it is excluded there); the plugin runs its tests with its own unittest"
        for name in NEEDS_UNITTEST
    },
    "string_crlf_conversion.py": "run-tests.py sends the file's CRLF bytes raw, and the "
    "emulated board's terminal input turns each CR into a line end of its own, so the "
    "lexer sees two; the plugin sends the source inside a string literal, so the board's "
    "lexer sees the file's own CRLF and converts it, as the test expects",
}

PROFILES = """\
[unix-crlf]
base = "unix"
crlf = true
"""


@pytest.fixture(scope="module")
def crlf_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PtyBoard]:
    """The real unix port on a PTY, sending a board's ``\\r\\n`` line ends."""
    profiles = tmp_path_factory.mktemp("profiles") / "profiles.toml"
    profiles.write_text(PROFILES)
    with PtyBoard("unix-crlf", profiles=str(profiles)) as board:
        yield board


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pytest cache for the plugin's runs: CPython's outputs are computed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def run_tests_verdicts(
    crlf_board: PtyBoard, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """run-tests.py's verdict per file ("pass", "fail", "skip") on the CRLF board."""
    results = tmp_path_factory.mktemp("run-tests-results")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, "run-tests.py", "-t", f"port:{crlf_board.path}", "-d", "basics",
         "-r", str(results), "-e", "|".join(n.replace(".", r"\.") for n in NEEDS_UNITTEST)],
        cwd=MP_TESTS, env=env, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    report = results / "_results.json"
    assert report.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    verdicts: dict[str, str] = {}
    for test, verdict, _reason in json.loads(report.read_text())["results"]:
        verdicts[test.rsplit("/", 1)[-1]] = {"ignored": "fail"}.get(verdict, verdict)
    return verdicts


def plugin_verdicts(port_args: list[str], cache: Path, junit: Path) -> dict[str, str]:
    """The plugin's verdict per file: a unit-test file fails when one of its tests fails,
    is skipped when all are, and passes otherwise."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *port_args, "--mp-board-tests", str(BASICS), "-q",
         "-p", "no:randomly", "-o", f"cache_dir={cache}", "-o", "junit_family=xunit1",
         f"--junitxml={junit}"],
        cwd=junit.parent, capture_output=True, text=True, timeout=500, check=False,
    )  # fmt: skip
    assert junit.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    per_file: dict[str, list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = Path(case.get("file", "")).name
        if case.find("failure") is not None or case.find("error") is not None:
            verdict = "fail"
        elif case.find("skipped") is not None:
            verdict = "skip"
        else:
            verdict = "pass"
        per_file.setdefault(name, []).append(verdict)
    out: dict[str, str] = {}
    for name, verdicts in per_file.items():
        if "fail" in verdicts:
            out[name] = "fail"
        elif all(v == "skip" for v in verdicts):
            out[name] = "skip"
        else:
            out[name] = "pass"
    return out


@pytest.mark.parametrize("board", ["unix port on a PTY", "mpmock://unix"])
def test_basics_get_run_tests_verdicts(
    board: str,
    crlf_board: PtyBoard,
    run_tests_verdicts: dict[str, str],
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    port = crlf_board.path if board.startswith("unix port") else "mpmock://unix"
    ours = plugin_verdicts([f"--mp-port={port}"], cache_dir, tmp_path / "junit.xml")
    files = sorted(p.name for p in BASICS.glob("*.py"))
    assert len(files) >= 500
    assert set(ours) == set(files), "every file of basics/ is collected"
    same = 0
    differences: list[str] = []
    for name in files:
        theirs = run_tests_verdicts.get(name, "not run")
        if ours[name] == theirs:
            same += 1
            continue
        cause = KNOWN_CAUSES.get(name, "UNEXPLAINED")
        differences.append(f"{name}: run-tests.py {theirs}, pytest-mpsession {ours[name]}: {cause}")
    share = same / len(files)
    listing = "\n".join(differences)
    assert share >= 0.98, f"{same}/{len(files)} same verdicts ({share:.1%}):\n{listing}"
    assert not [d for d in differences if d.endswith("UNEXPLAINED")], listing
    # the run really ran: most files pass on both
    assert sum(v == "pass" for v in ours.values()) >= 500
