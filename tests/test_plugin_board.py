"""The plugin with a board: emulated boards on pseudo-terminals (the real MicroPython
interpreter behind them). Fixtures, skip reasons, the report header, the capabilities cache,
JUnit properties, board tracebacks, hooks, reset policies, pytest-timeout and pytest-xdist."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def generic_port() -> Iterator[str]:
    """A current emulated board (profile ``generic``), shared by this module's runs."""
    with PtyBoard("generic") as board:
        yield board.path


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MP_PORT", "MP_MOCK", "MP_TIMEOUT", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    # The inner runs need no hypothesis plugin (its summary costs a second per run).
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")


BASIC = """
import pytest

def test_exec(device_session):
    assert device_session.exec("print(6 * 7)") == "42\\n"

def test_eval_and_namespace(device_session):
    device_session.exec("x = 5")
    assert device_session.eval("x * 2") == 10

def test_capabilities(device_capabilities):
    assert device_capabilities.device_type == "generic"
    assert device_capabilities.supports_feature("float")
    assert device_capabilities.performance.ops_per_s > 0

def test_manager(device_session_manager):
    assert device_session_manager.state == "connected"

@pytest.mark.requires_feature("threading", "float")
def test_threads(device_session):
    device_session.exec("import _thread")

@pytest.mark.requires_feature("float", "bluetooth", "lora")
def test_needs_radio():
    pass

@pytest.mark.requires_platform("esp32", "rp2")
def test_on_esp32_or_rp2():
    pass

@pytest.mark.requires_platform("generic")
def test_on_generic():
    pass

@pytest.mark.requires_firmware(">=9.0")
def test_future_firmware():
    pass

@pytest.mark.requires_firmware(">=1.20", "<2")
def test_current_firmware():
    pass
"""


def test_fixtures_markers_and_header(pytester: pytest.Pytester, generic_port: str) -> None:
    pytester.makeini("[pytest]\nmp_features =\n    lora: import sx127x\n")
    pytester.makepyfile(BASIC)
    result = pytester.runpytest(f"--mp-port={generic_port}", "-rs", "-W", "error", "-v")
    result.assert_outcomes(passed=7, skipped=3)
    progress = f"mpsession: {generic_port}: connecting ... "
    header = [
        line
        for line in result.outlines
        if line.startswith("mpsession: ") and not line.startswith(progress)
    ]
    assert re.fullmatch(
        rf"mpsession: micropython 1\.\d+\.\d+ on generic at {re.escape(generic_port)}, "
        r"features: (\w+, )+\w+",
        header[0],
    ), header
    assert "float" in header[0] and "raw_paste" in header[0]
    assert header[1].startswith("mpsession: round trip ")  # with -v: the measurements
    plain = pytester.runpytest(f"--mp-port={generic_port}", "-p", "no:cacheprovider")
    lines = [line for line in plain.outlines if line.startswith("mpsession: ")]
    # the progress line (the board's connection and probe, timed), then the header line
    assert len(lines) == 2, lines
    assert re.fullmatch(
        re.escape(progress) + r"raw REPL in \d+\.\d\d s, probing \.\.\. done in \d+\.\d\d s",
        lines[0],
    ), lines
    assert lines[1].startswith("mpsession: micropython ")
    # the connection is part of the run: pytest's duration counts it (each figure is rounded
    # to 10 ms, hence the 20 ms of slack)
    steps = [float(x) for x in re.findall(r"in (\d+\.\d\d) s", lines[0])]
    match = re.search(r" in (\d+\.\d\d)s", plain.outlines[-1])
    assert match is not None, plain.outlines[-1]
    assert float(match.group(1)) + 0.02 >= sum(steps), (plain.outlines[-1], lines[0])
    # the progress line is part of the header phase, after pytest's first lines
    assert plain.outlines.index(lines[0]) > plain.outlines.index(
        next(line for line in plain.outlines if "test session starts" in line)
    )
    quiet = pytester.runpytest(f"--mp-port={generic_port}", "-p", "no:cacheprovider", "-q")
    quiet.assert_outcomes(passed=7, skipped=3)
    assert not [line for line in quiet.outlines if "mpsession" in line], quiet.outlines
    out = result.stdout.str()
    version = re.search(r"micropython (1\.\d+\.\d+) on generic", header[0])
    assert version is not None
    board = f"(micropython {version.group(1)} on generic)"
    assert f"requires_feature: board lacks 'bluetooth', 'lora' {board}" in out
    assert f"requires_platform: board is 'generic', not 'esp32', 'rp2' {board}" in out
    assert f"requires_firmware: board has {version.group(1)}, not '>=9.0' {board}" in out
    # Skips are reported at the test, not inside the plugin.
    assert "pytest_mpsession/plugin" not in out and "markers.py" not in out


def test_capabilities_are_cached_by_unique_id_and_firmware(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    pytester.makepyfile(
        """
        def test_caps(device_capabilities):
            assert device_capabilities.unique_id
        """
    )
    first = pytester.runpytest(f"--mp-port={generic_port}", "-v")
    first.assert_outcomes(passed=1)
    assert "capabilities from cache" not in first.stdout.str()
    entries = list((pytester.path / ".pytest_cache/v/mpsession/capabilities").iterdir())
    assert len(entries) == 1 and "_1." in entries[0].name
    second = pytester.runpytest(f"--mp-port={generic_port}", "-v")
    second.assert_outcomes(passed=1)
    assert "(capabilities from cache)" in second.stdout.str()
    third = pytester.runpytest(f"--mp-port={generic_port}", "--mp-no-cache", "-v")
    third.assert_outcomes(passed=1)
    assert "capabilities from cache" not in third.stdout.str()
    # A damaged cache entry is ignored (probed again, and rewritten).
    entries[0].write_text('{"version": "broken"}')
    fourth = pytester.runpytest(f"--mp-port={generic_port}", "-v")
    fourth.assert_outcomes(passed=1)
    assert "capabilities from cache" not in fourth.stdout.str()
    assert "firmware_version" in entries[0].read_text()


def test_junit_suite_properties(pytester: pytest.Pytester, generic_port: str) -> None:
    pytester.makepyfile("def test_x(device_session): device_session.exec('pass')")
    result = pytester.runpytest(f"--mp-port={generic_port}", "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    root = ET.parse(pytester.path / "out.xml").getroot()
    props = [(p.get("name"), p.get("value")) for p in root.iter("property")]
    assert [name for name, _value in props] == [
        "mpsession_firmware",
        "mpsession_platform",
        "mpsession_port",
    ]
    values = dict(props)
    assert values["mpsession_platform"] == "generic"
    assert values["mpsession_port"] == generic_port
    assert re.fullmatch(r"1\.\d+\.\d+", values["mpsession_firmware"] or "")


def test_junit_suite_properties_under_xdist_are_clean_per_worker(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.parametrize('i', range(4))\n"
        "def test_x(device_session, i):\n    device_session.exec('pass')\n"
    )
    with PtyBoard("esp32") as other:
        result = pytester.runpytest_subprocess(
            "-n", "2", f"--mp-port={generic_port}", f"--mp-port={other.path}",
            "--junitxml=out.xml", "-p", "no:cacheprovider",
        )  # fmt: skip
    result.assert_outcomes(passed=4)
    root = ET.parse(pytester.path / "out.xml").getroot()
    # the suite's own properties (each testcase also has mpsession_board, the farm's)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    props = [(p.get("name"), p.get("value")) for p in suite.findall("properties/property")]
    firmware = props[1][1] or ""
    assert re.fullmatch(r"1\.\d+\.\d+", firmware), props
    # one group per worker, the worker in its own property, every value clean
    assert props == [
        ("mpsession_worker", "gw0"),
        ("mpsession_firmware", firmware),
        ("mpsession_platform", "generic"),
        ("mpsession_port", generic_port),
        ("mpsession_worker", "gw1"),
        ("mpsession_firmware", firmware),
        ("mpsession_platform", "esp32"),
        ("mpsession_port", other.path),
    ]


def test_device_error_shows_the_board_traceback_at_the_users_lines(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    pytester.makepyfile(
        test_fails='''
        def test_divide(device_session):
            device_session.exec("""
        def ratio(a, b):
            return a / b
        print(ratio(1, 0))
        """)

        def test_after(device_session):
            assert device_session.eval("1 + 1") == 2
        '''
    )
    result = pytester.runpytest(f"--mp-port={generic_port}")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # The test's own line, then the board's traceback with the test file's line numbers.
    result.stdout.fnmatch_lines(
        [
            ">       device_session.exec(*",
            "E       pytest_mpsession.errors.DeviceError: ZeroDivisionError: divide by zero",
            "test_fails.py:2: DeviceError",
            "*- board traceback -*",
            "Traceback (most recent call last):",
            '  File "test_fails.py", line 5, in <module>',
            "    print(ratio(1, 0))",
            '  File "test_fails.py", line 4, in ratio',
            "    return a / b",
            "ZeroDivisionError: divide by zero",
        ]
    )
    # None of the plugin's or the session core's frames.
    assert "pytest_mpsession/" not in out
    assert "<stdin>" not in out


def test_one_line_code_with_escapes_keeps_its_own_line_numbers(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    # Code in a one-line string with \n escapes has lines of its own that are not the test
    # file's: the traceback names the line of the call and the code's own line (not the
    # file's next lines, here a comment and a line past the end of the file).
    pytester.makepyfile(
        test_tb="""
        def test_index(device_session):
            device_session.exec("def g():\\n    return [][3]\\ng()")
            # a comment on line 3
        """
    )
    result = pytester.runpytest(f"--mp-port={generic_port}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*- board traceback -*",
            "Traceback (most recent call last):",
            '  File "test_tb.py", line 2 (line 3 of the code given there), in <module>',
            "    g()",
            '  File "test_tb.py", line 2 (line 2 of the code given there), in g',
            "    return [][3]",
            "IndexError: list index out of range",
        ]
    )
    assert "comment" not in result.stdout.str()
    assert "line 3, in" not in result.stdout.str() and "line 4" not in result.stdout.str()


def test_triple_quoted_and_one_line_code_map_onto_the_files_lines(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    pytester.makepyfile(
        test_tb='''
        import textwrap

        def test_dedented(device_session):
            device_session.exec(textwrap.dedent("""
                def h(x):
                    return {}[x]
                h("key")
            """))

        def test_one_line(device_session):
            device_session.exec("[][1]\\n")
        '''
    )
    result = pytester.runpytest(f"--mp-port={generic_port}", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            '  File "test_tb.py", line 7, in <module>',
            '    h("key")',
            '  File "test_tb.py", line 6, in h',
            "    return {}[x]",
            "KeyError: key",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            '  File "test_tb.py", line 11, in <module>',
            "    [][1]",
            "IndexError: list index out of range",
        ]
    )


def test_board_traceback_mapping_unit(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from pytest_mpsession.plugin.reports import board_traceback

    test_file = tmp_path / "test_x.py"
    test_file.write_text(
        "def test(s):\n"
        '    s.exec("a = 1\\n"\n'  # implicit concatenation, one piece a line: the file's lines
        '           "b = [][0]\\n")\n'
        '    s.exec("x = 1\\tb = 2")\n'  # one line with an escape: its own line numbers
    )
    err = SimpleNamespace(
        traceback='Traceback (most recent call last):\r\n  File "<string>", line 2, in <module>\r\n'
        "IndexError: list index out of range\r\n"
    )

    def tb_at(line: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(path=test_file, lineno=line - 1)]

    text = board_traceback(err, tb_at(2))
    assert 'File "' + os.path.relpath(test_file) + '", line 3, in <module>\n    b = [][0]' in text
    text = board_traceback(err, tb_at(4))
    assert "line 4 (line 2 of the code given there), in <module>" in text
    # no literal at that line: the board's text as it is
    assert board_traceback(err, tb_at(1)) == err.traceback.replace("\r\n", "\n").rstrip()


def test_all_hooks_are_called(pytester: pytest.Pytester, generic_port: str) -> None:
    pytester.makeconftest(
        """
        import pytest
        CALLS = []

        def pytest_mpsession_probe_features(probes):
            CALLS.append("probe_features")
            probes.add("has_json", "import json")

        def pytest_mpsession_capabilities(capabilities):
            CALLS.append(("capabilities", capabilities.device_type))

        def pytest_mpsession_session_start(session):
            CALLS.append("session_start")
            session.set_state("started", True)

        def pytest_mpsession_session_finish(session):
            CALLS.append(("session_finish", session.get_state("started")))

        def pytest_mpsession_state_changed(manager, old, new):
            CALLS.append(("state", str(old), str(new)))

        @pytest.fixture
        def calls():
            return CALLS
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_feature("has_json")
        def test_one(device_session, calls):
            device_session.exec("pass")
            assert calls[0] == "probe_features"
            assert ("capabilities", "generic") in calls
            assert calls[-1] == ("state", "busy", "connected")
            assert calls.count("session_start") == 1

        def test_two(device_session, calls):
            assert ("session_finish", True) in calls
            assert calls.count("session_start") == 2
        """
    )
    pytester.runpytest(f"--mp-port={generic_port}").assert_outcomes(passed=2)


def test_reset_policies(pytester: pytest.Pytester, generic_port: str) -> None:
    pytester.makepyfile(
        """
        import pytest

        RESETS = []

        @pytest.mark.mp_reset("soft")
        def test_soft(device_session, device_session_manager):
            RESETS.append(device_session_manager.reset_count)

        def test_after_soft(device_session, device_session_manager):
            RESETS.append(device_session_manager.reset_count)
            assert RESETS[1] == RESETS[0] + 1

        def test_after_clean(device_session, device_session_manager):
            assert device_session_manager.reset_count == RESETS[1]
        """
    )
    pytester.runpytest(f"--mp-port={generic_port}", "-p", "no:randomly").assert_outcomes(passed=3)
    # --mp-reset soft applies to every test.
    pytester.makepyfile(
        test_all_soft="""
        COUNTS = []

        def test_a(device_session, device_session_manager):
            COUNTS.append(device_session_manager.reset_count)

        def test_b(device_session, device_session_manager):
            assert device_session_manager.reset_count == COUNTS[0] + 1
        """
    )
    pytester.runpytest(
        f"--mp-port={generic_port}", "--mp-reset=soft", "test_all_soft.py"
    ).assert_outcomes(passed=2)


def test_a_timed_out_test_leaves_the_board_clean(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.timeout(2, method="signal")
        def test_hangs(device_session):
            device_session.exec("while True:\\n    pass", timeout=60)

        def test_next(device_session):
            assert device_session.exec("print('alive')") == "alive\\n"
            assert device_session.eval("sum(range(10))") == 45
        """
    )
    with PtyBoard("generic") as board:
        result = pytester.runpytest_subprocess(f"--mp-port={board.path}", "-p", "timeout")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


def test_legacy_board_skip_reasons(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_feature("threading")
        def test_threads():
            pass

        @pytest.mark.requires_firmware(">=1.20")
        def test_new_firmware():
            pass

        def test_caps(device_capabilities):
            assert device_capabilities.version == (1, 9, 2)
            assert not device_capabilities.supports_feature("raw_paste")
            assert device_capabilities.memory_free < 16 * 1024
        """
    )
    with PtyBoard("legacy") as board:
        result = pytester.runpytest(f"--mp-port={board.path}", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*requires_feature: board lacks 'threading' (micropython 1.9.2 on microbit)",
            "*requires_firmware: board has 1.9.2, not '>=1.20' (micropython 1.9.2 on microbit)",
        ]
    )


def test_bare_unix_port(pytester: pytest.Pytester, unix_port: str) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_feature("threading", "asyncio", "native", "viper", "bigint")
        def test_rich(device_session):
            assert device_session.eval("(1 << 70) >> 69") == 2

        @pytest.mark.requires_platform("linux")
        def test_linux(device_capabilities):
            assert device_capabilities.version >= (1, 20, 0)
        """
    )
    result = pytester.runpytest(f"--mp-port={unix_port}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["mpsession: micropython 1.*on linux at *, features: *threading*"])


def test_not_a_micropython_board_is_a_usage_error(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    import os
    import pty

    # A pseudo-terminal nobody answers on: it is a serial port, but no raw REPL.
    master, slave = pty.openpty()
    try:
        pytester.makepyfile("def test_x(device_session): pass")
        result = pytester.runpytest(f"--mp-port={os.ttyname(slave)}", "--mp-timeout=1")
    finally:
        os.close(master)
        os.close(slave)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1 and "mpsession: cannot use the board at" in errors[0]
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    # while it waited, the header said which board it was waiting for
    result.stdout.fnmatch_lines(["mpsession: /dev/pts/*: connecting ... failed"])


# -- pytest-xdist: a pool of boards ---------------------------------------------------------------

# One board against two boards with -n 2 (40 tests x 50 ms): a measurement, in
# tests/benchmarks/test_bench_pool.py, with the pool's header and JUnit properties.


@pytest.mark.timeout(120)
def test_xdist_pool_with_a_silent_board_is_a_one_line_usage_error(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    pytest.importorskip("xdist")
    import os
    import pty

    # A serial port nobody answers on (it opens, but there is no raw REPL behind it) beside
    # a working board: the controller checks both before the workers start, so the run
    # stops at once with exit 4 instead of erroring every test of that worker.
    master, slave = pty.openpty()
    silent = os.ttyname(slave)
    try:
        pytester.makepyfile(
            """
            def test_board(device_session):
                pass

            def test_host():
                pass
            """
        )
        result = pytester.runpytest_subprocess(
            "-n", "2", "--mp-timeout=1", f"--mp-port={generic_port}",
            f"--mp-port={os.ttyname(slave)}",
        )  # fmt: skip
    finally:
        os.close(master)
        os.close(slave)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if line.startswith("ERROR:")]
    assert errors == [
        f"ERROR: mpsession: cannot use the board at {silent}: no raw REPL answer "
        f"from {silent} within 1 s: it sent nothing (is it powered and running "
        "MicroPython, and is the baudrate right?)"
    ], result.errlines
    result.stdout.fnmatch_lines(
        [
            f"mpsession: {generic_port}: checking ... raw REPL in *s",
            f"mpsession: {silent}: checking ... failed",
        ]
    )
    out = result.stdout.str() + result.stderr.str()
    assert "created:" not in out and "Traceback" not in out and "INTERNALERROR" not in out
    # with -q: no progress lines, the same one-line error
    pytester.makepyfile(test_other="def test_y(device_session): pass")
    master, slave = pty.openpty()
    try:
        quiet = pytester.runpytest_subprocess(
            "-q", "-n", "2", "--mp-timeout=1", f"--mp-port={generic_port}",
            f"--mp-port={os.ttyname(slave)}",
        )  # fmt: skip
    finally:
        os.close(master)
        os.close(slave)
    assert quiet.ret == pytest.ExitCode.USAGE_ERROR
    assert "checking" not in quiet.stdout.str()
    assert len([line for line in quiet.errlines if line.startswith("ERROR:")]) == 1


def test_probes_from_a_conftest_found_during_collection(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    # hw/conftest.py is not an initial conftest (loaded while collecting hw/): its probes
    # still count, and are run on the board.
    hw = pytester.mkpydir("hw")
    (hw / "conftest.py").write_text(
        "def pytest_mpsession_probe_features(probes):\n"
        "    probes.add('has_json', 'import json')\n"
        "    probes.add('lora', 'import sx127x')\n"
    )
    (hw / "test_radio.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.requires_feature('has_json')\n"
        "def test_json(device_session):\n"
        "    assert device_session.eval('1') == 1\n\n"
        "@pytest.mark.requires_feature('lora')\n"
        "def test_lora():\n"
        "    pass\n"
    )
    result = pytester.runpytest(f"--mp-port={generic_port}", "-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        ["*requires_feature: board lacks 'lora' (micropython 1.* on generic)"]
    )
    # And without a board, the names are still known (no collection error).
    pytester.runpytest().assert_outcomes(skipped=2)


def test_port_in_two_words_on_the_command_line_just_works(
    pytester: pytest.Pytester, generic_port: str
) -> None:
    # `pytest --mp-port /dev/pts/N`: pytest would take the port for a test path and /dev/pts
    # for its rootdir (losing the project's ini); the plugin runs the command again with
    # `--mp-port=/dev/pts/N`.
    pytester.makeini("[pytest]\ntestpaths = checks\nmarkers =\n    project_marker: ours\n")
    checks = pytester.mkdir("checks")
    (checks / "test_board.py").write_text(
        "import pytest\n\n@pytest.mark.project_marker\n"
        "def test_board(device_session):\n    assert device_session.eval('6 * 7') == 42\n"
    )
    result = pytester.runpytest_subprocess("--mp-port", generic_port, "--strict-markers")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "configfile: tox.ini"])


def test_symlinked_port_in_two_words_keeps_the_projects_ini(
    pytester: pytest.Pytester, generic_port: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # `pytest --mp-port /dev/serial/by-id/usb-...`: pytest takes the link's folder (not the
    # device's) for its rootdir; the plugin must see that and keep the project's ini, whose
    # mp_features defines a feature the test needs.
    by_id = tmp_path_factory.mktemp("by-id")
    link = by_id / "usb-MicroPython_Board_in_FS_mode_e6614c311b7e6f35-if00"
    link.symlink_to(generic_port)
    pytester.makeini("[pytest]\nmp_features =\n    blinky: import sys\n")
    pytester.makepyfile(
        test_blink="""
        import pytest

        @pytest.mark.requires_feature("blinky")
        def test_blink(device_session):
            assert device_session.eval("1 + 1") == 2
        """
    )
    result = pytester.runpytest_subprocess("--mp-port", str(link), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "configfile: tox.ini"])
    # In-process (pytest.main: no command line to run again), a plain usage error instead.
    inproc = pytester.runpytest("--mp-port", str(link), "-p", "no:cacheprovider")
    assert inproc.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in inproc.errlines if line.startswith("ERROR:")]
    taken = os.path.commonpath([pytester.path, by_id])  # pytest's rootdir: above both
    assert errors == [
        f"ERROR: mpsession: pytest read {link} (the value of --mp-port) as a test path and "
        f"made {taken} its rootdir; write --mp-port={link} as one word (or set MP_PORT)"
    ], inproc.errlines
    # With a test path beside it pytest finds the project's ini anyway: nothing to say.
    beside = pytester.runpytest("--mp-port", str(link), "test_blink.py", "-p", "no:cacheprovider")
    beside.assert_outcomes(passed=1)
    # Nor when the configuration file is named (-c): pytest guessed nothing from the port.
    named = pytester.runpytest("--mp-port", str(link), "-c", "tox.ini", "-p", "no:cacheprovider")
    named.assert_outcomes(passed=1)


def test_board_tests_folder_in_two_words_keeps_the_projects_ini(
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # `pytest --mp-mock --mp-board-tests /elsewhere/board` (two words, a folder outside the
    # project): pytest takes the folder for a test path and a folder above both for its
    # rootdir. The command runs again with the value in one word; in-process, the usage
    # error names --mp-board-tests, not a port written as one word beside it.
    board = tmp_path_factory.mktemp("elsewhere") / "board"
    board.mkdir()
    (board / "blink.py").write_text("print('on')\n")
    (board / "blink.py.exp").write_text("on\n")
    pytester.makeini("[pytest]\nmp_mock = generic\n")
    result = pytester.runpytest_subprocess("--mp-board-tests", str(board), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "configfile: tox.ini"])
    inproc = pytester.runpytest(
        "--mp-port=mpmock://generic", "--mp-board-tests", str(board), "-p", "no:cacheprovider"
    )
    assert inproc.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in inproc.errlines if line.startswith("ERROR:")]
    taken = os.path.commonpath([pytester.path, board])
    assert errors == [
        f"ERROR: mpsession: pytest read {board} (the value of --mp-board-tests) as a test path "
        f"and made {taken} its rootdir; write --mp-board-tests={board} as one word"
    ], inproc.errlines


def test_progress_shows_while_a_silent_board_is_awaited_and_ctrl_c_ends_the_wait(
    pytester: pytest.Pytester,
) -> None:
    # The line is on the terminal while the plugin waits (not only after), and Ctrl-C during
    # the wait ends the run as pytest's own interruption, the line closed.
    import pty
    import select
    import signal
    import subprocess
    import sys
    import time

    pytester.makepyfile("def test_x(device_session): pass")
    master, slave = pty.openpty()
    port = os.ttyname(slave)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", f"--mp-port={port}", "--mp-timeout=60",
         "-p", "no:cacheprovider"],
        cwd=pytester.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b": connecting ... " not in seen:
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            assert ready, seen
            assert proc.stdout is not None
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, seen
            seen += chunk
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # Ctrl-C ended the 60 s wait
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    text = (seen + out).decode()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, text + err.decode()
    assert f"mpsession: {port}: connecting ... failed\n" in text
    assert "INTERNALERROR" not in text + err.decode()


def test_ctrl_c_while_connecting_is_raised_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    # The interrupted wait's frames stay out of the KeyboardInterrupt pytest reports: a frame
    # interrupted between two instructions can have no line number, and pytest's report of
    # it then failed with a TypeError (exit 1 instead of 2, seen once in CI).
    import traceback
    import types

    from pytest_mpsession.plugin import boards

    def waiting(config: object, board: object, progress: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(boards, "_connect", waiting)
    ended: list[str] = []
    progress = boards.Progress()
    monkeypatch.setattr(progress, "end", ended.append)
    board = types.SimpleNamespace(port="/dev/ttyACM9")
    with pytest.raises(KeyboardInterrupt) as info:
        boards.connect_board(None, board, progress)  # type: ignore[arg-type]
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "waiting" not in names and names[-1] == "connect_board"
    assert info.value.__suppress_context__
    assert ended == ["failed"]
