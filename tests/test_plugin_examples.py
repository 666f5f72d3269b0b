"""The example suite (``examples/``), run the way the README tells users to run it: on the
emulator's boards and on the real MicroPython unix port. Nothing may fail; what a board
cannot do is skipped by the examples' markers, with a reason naming the board."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.timeout(300)


def run_examples(tmp_path: Path, *args: str) -> tuple[dict[str, int], str]:
    """``python -m pytest <args> examples`` from the repository root (its pyproject: strict
    markers, warnings as errors), with the cache in ``tmp_path``."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "examples", "-q", "-rs",
         "-o", f"cache_dir={tmp_path / 'cache'}", "--benchmark-disable"],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {noun: int(n) for n, noun in re.findall(r"(\d+) (\w+)", summary)}
    assert proc.returncode == 0, out
    return counts, out


def test_examples_on_the_default_emulated_board(tmp_path: Path) -> None:
    counts, out = run_examples(tmp_path, "--mp-mock")
    assert counts.get("failed", 0) == 0 and counts.get("error", 0) == 0
    assert counts["passed"] >= 50
    assert "skipped" not in counts, out  # a current board runs every example


@pytest.mark.parametrize("profile", ["esp32", "rp2"])
def test_examples_on_other_emulated_boards(tmp_path: Path, profile: str) -> None:
    counts, out = run_examples(tmp_path, f"--mp-mock={profile}")
    assert counts["passed"] >= 50, out


def test_examples_on_the_legacy_board_skip_what_it_cannot_do(tmp_path: Path) -> None:
    counts, out = run_examples(tmp_path, "--mp-mock=legacy")
    assert counts.get("failed", 0) == 0
    assert counts["passed"] >= 30, out
    # No threads, no asyncio, no machine.Pin on a 1.9-era micro:bit; and no f-strings.
    for reason in [
        "requires_feature: board lacks 'threading' (micropython 1.9.2 on microbit)",
        "requires_feature: board lacks 'asyncio' (micropython 1.9.2 on microbit)",
        "requires_firmware: board has 1.9.2, not '>=1.20' (micropython 1.9.2 on microbit)",
    ]:
        assert reason in out, out


def test_examples_on_the_real_unix_port(tmp_path: Path) -> None:
    with PtyBoard("unix") as board:
        counts, out = run_examples(tmp_path, f"--mp-port={board.path}")
    assert counts["passed"] >= 45, out
    # The bare interpreter has no machine.Pin and no emulator registry: those are skipped
    # (four host tests, and the three board tests of the TMP102 driver).
    assert "requires_feature: board lacks 'machine', 'emulator' (micropython 1." in out
    assert "requires_feature: board lacks 'emulator' (micropython 1." in out
    assert counts["skipped"] == 7, out


def test_examples_lint_clean() -> None:
    # The examples are what users copy: keep them free of unused names and the like.
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(EXAMPLES)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if "No module named ruff" in ruff.stderr:
        pytest.fail("ruff is not installed (pip install '.[lint]')")
    assert ruff.returncode == 0, ruff.stdout
