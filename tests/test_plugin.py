"""The plugin without a board: options, ini keys, environment variables, their precedence and
errors, markers and their checks, hook registration, skips when no board is configured."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.timeout(60)

DEVICE_TESTS = """
import re

import pytest

def test_host_only():
    assert 1 + 1 == 2

def test_uses_board(device_session):
    device_session.exec("x = 1")

def test_uses_caps(device_capabilities):
    pass

@pytest.mark.requires_feature("float")
def test_marked_only():
    pass
"""


def one_line_error(result: pytest.RunResult) -> str:
    """The single ``ERROR: ...`` line of a usage error, checking there is no traceback."""
    text = result.stderr.str() + result.stdout.str()
    assert "Traceback" not in text, text
    assert "INTERNALERROR" not in text, text
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.lines
    return errors[0]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MP_PORT", "MP_MOCK", "MP_TIMEOUT", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(name, raising=False)
    # The inner runs need no hypothesis plugin (its summary costs a second per run).
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")


# -- help, options, ini keys ---------------------------------------------------------------------


def test_help_lists_the_option_group_and_ini_keys(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    out = result.stdout.str()
    assert "MicroPython boards (pytest-mpsession):" in out
    for option in ["--mp-port=PORT", "--mp-mock=[PROFILE]", "--mp-baudrate=N", "--mp-timeout=S",
                   "--mp-reset={clean,soft,hard,none}", "--mp-no-cache"]:  # fmt: skip
        assert option in out, option
    for key in ["mp_port", "mp_mock", "mp_baudrate", "mp_timeout", "mp_reset", "mp_features"]:
        assert f"  {key} " in out, key
    # The ini help reuses the option help text.
    assert out.count("default timeout of each board call") == 2


def test_markers_are_registered_with_signatures(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.requires_feature(*features):*",
            "@pytest.mark.requires_platform(*platforms):*",
            "@pytest.mark.requires_firmware(*specs):*",
            "@pytest.mark.mp_reset(policy):*",
        ]
    )


def test_hookspecs_are_registered(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_hooks(request):
            hook = request.config.hook
            for name in ["probe_features", "capabilities", "session_start", "session_finish",
                         "state_changed"]:
                assert hasattr(hook, "pytest_mpsession_" + name)
        """
    )
    pytester.runpytest("-W", "error").assert_outcomes(passed=1)


def test_plugin_modules_are_registered_from_the_one_list(pytester: pytest.Pytester) -> None:
    # plugin/__init__.py lists the plugin's modules; each is a pytest plugin of its own.
    from pytest_mpsession import plugin

    pytester.makepyfile(
        f"""
        def test_registered(request):
            pm = request.config.pluginmanager
            for name in {plugin.pytest_plugins!r}:
                assert pm.get_plugin(name) is not None, name
        """
    )
    pytester.runpytest("-W", "error").assert_outcomes(passed=1)
    assert "pytest_mpsession.plugin.fixtures" in plugin.pytest_plugins


def test_fixtures_show_in_pytest_fixtures_with_their_docstrings(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from pytest_mpsession.plugin.fixtures*",
            "device_session_manager [[]session scope[]] -- *fixtures.py:*",
            "    The connected :class:`DeviceSessionManager` of this worker's board.",
            "device_capabilities [[]session scope[]] -- *",
            "    The board's :class:`DeviceCapabilities`*",
            "device_session -- *",
            "    A fresh :class:`DeviceSession` for the test*",
        ]
    )


# -- no board configured ---------------------------------------------------------------------------


def test_no_board_skips_device_tests_and_runs_the_rest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_TESTS)
    result = pytester.runpytest("-rs", "--strict-markers", "-W", "error")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*no MicroPython board configured: give --mp-port PORT*"
            "or --mp-mock to test on the emulator"
        ]
    )
    # No header line (the plugin is in every project of the environment), but a line in the
    # summary when device tests were skipped for want of a board.
    header = result.outlines[: result.outlines.index("collected 4 items")]
    assert not [line for line in header if "mpsession:" in line], header
    result.stdout.fnmatch_lines(
        ["mpsession: no board: 3 device tests skipped (use --mp-port PORT or --mp-mock)"]
    )
    result = pytester.runpytest("-n", "2", "-p", "xdist")  # the controller counts them too
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["mpsession: no board: 3 device tests skipped*"])


def test_no_board_and_no_device_test_no_mpsession_line(pytester: pytest.Pytester) -> None:
    # Like pytest-timeout, which says nothing unless a timeout is set.
    pytester.makepyfile("def test_host():\n    assert True\n")
    result = pytester.runpytest("-W", "error")
    result.assert_outcomes(passed=1)
    assert "mpsession:" not in result.stdout.str() + result.stderr.str()
    verbose = pytester.runpytest("-W", "error", "-v", "-rA")
    assert "mpsession:" not in verbose.stdout.str() + verbose.stderr.str()


# -- bad values: one line, exit 4, naming the value and where it came from -------------------------


@pytest.mark.parametrize(
    ("args", "ini", "expected"),
    [
        (["--mp-baudrate", "fast"], "", "--mp-baudrate 'fast' is not a baud rate*"),
        (["--mp-baudrate=-9600"], "", "--mp-baudrate '-9600' is not a baud rate*"),
        (["--mp-timeout", "0"], "", "--mp-timeout '0' is not a timeout*"),
        (["--mp-timeout", "nan"], "", "--mp-timeout 'nan' is not a timeout*"),
        ([], "mp_timeout = soon", "mp_timeout in tox.ini 'soon' is not a timeout*"),
        ([], "mp_baudrate = 1.5", "mp_baudrate in tox.ini '1.5' is not a baud rate*"),
        (["--mp-reset", "reboot"], "", "--mp-reset 'reboot' is not a reset policy: use one of "
                                       "clean, soft, hard, none"),
        ([], "mp_reset = always", "mp_reset in tox.ini 'always' is not a reset policy*"),
        ([], "mp_features =\n    lora import sx127x", "*mp_features in tox.ini: 'lora import "
                                                    "sx127x' is not 'name: probe'*"),
        ([], "mp_features =\n    1lora: import sx127x", "*mp_features in tox.ini: feature name "
                                                     "'1lora' is not valid*"),
        ([], "mp_features =\n    lora: import sx127x +", "mp_features in tox.ini: the probe for "
         "feature 'lora' is not valid Python (invalid syntax at column 15): 'import sx127x +'"),
        ([], "mp_features =\n    big: assert gc.mem_free( > 1", "mp_features in tox.ini: the probe "
         "for feature 'big' is not valid Python (*): 'assert gc.mem_free( > 1'"),
        ([], "mp_features =\n    float: import myfloat", "mp_features in tox.ini: 'float' is a "
         "built-in feature, probed by the plugin; give your probe a name of its own"),
        ([], "mp_features =\n    lora: import a\n    lora: import b", "mp_features in tox.ini: "
         "feature 'lora' is given twice; keep one probe"),
        (["--mp-port=/dev/x", "--mp-mock"], "", "*--mp-port and --mp-mock exclude each other*"),
        (["--mp-port="], "", "*--mp-port gives an empty port*"),
        (["--mp-mock=nosuchboard"], "",
         "*unknown emulator profile 'nosuchboard'; valid profiles: *generic*(from --mp-mock)"),
    ],
)  # fmt: skip
def test_bad_values_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, expected: str
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = one_line_error(result)
    from fnmatch import fnmatch

    assert fnmatch(line, "ERROR: mpsession: " + expected.lstrip("*")) or fnmatch(
        line, "ERROR: *" + expected
    ), line


def test_a_hook_probe_that_does_not_compile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "def pytest_mpsession_probe_features(probes):\n"
        "    probes.add('radio', 'import radio; radio.on(')\n"
    )
    pytester.makepyfile("def test_x(device_session): pass")
    result = pytester.runpytest("--mp-mock")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = one_line_error(result)
    assert line.startswith(
        "ERROR: mpsession: pytest_mpsession_probe_features: the probe for feature 'radio' is "
        "not valid Python ("
    ), line
    assert line.endswith("fix it in the conftest.py or plugin that adds it"), line


def test_env_values_are_checked_and_named(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile("def test_x(): pass")
    monkeypatch.setenv("MP_MOCK", "esp32; rm -rf")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "MP_MOCK='esp32; rm -rf' is not an emulator profile name" in one_line_error(result)
    monkeypatch.setenv("MP_MOCK", "1")
    monkeypatch.setenv("MP_PORT", "/dev/ttyACM0")
    result = pytester.runpytest()
    assert "MP_PORT and MP_MOCK exclude each other" in one_line_error(result)


# -- precedence: command line > environment > ini ----------------------------------------------


def _port_in_error(result: pytest.RunResult) -> str:
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = one_line_error(result)
    assert "cannot use the board at" in line, line
    return line.split("cannot use the board at ", 1)[1].split(":", 1)[0]


def test_port_precedence_cli_env_ini(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    missing = tmp_path_factory.mktemp("ports")
    pytester.makeini(f"[pytest]\nmp_port = {missing}/ini\n")
    pytester.makepyfile("def test_x(): pass")
    assert _port_in_error(pytester.runpytest()) == f"{missing}/ini"
    monkeypatch.setenv("MP_PORT", f"{missing}/env")
    assert _port_in_error(pytester.runpytest()) == f"{missing}/env"
    assert _port_in_error(pytester.runpytest(f"--mp-port={missing}/cli")) == f"{missing}/cli"


def test_mock_on_the_command_line_beats_a_port_in_the_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmp_port = /dev/ttyNOPE0\n")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--mp-mock=nosuchboard")
    error = one_line_error(result)
    assert "unknown emulator profile 'nosuchboard'" in error
    assert error.endswith("(from --mp-mock)")
    pytester.makeini("[pytest]\nmp_mock = nosuchboard\n")
    result = pytester.runpytest()
    assert one_line_error(result).endswith("(from mp_mock in tox.ini)")


def test_a_missing_port_stops_the_run_before_any_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(DEVICE_TESTS)
    result = pytester.runpytest("--mp-port=/dev/ttyDOESNOTEXIST")
    assert _port_in_error(result) == "/dev/ttyDOESNOTEXIST"
    result.stdout.no_fnmatch_line("*passed*")


def test_port_path_read_as_test_path_is_explained(pytester: pytest.Pytester) -> None:
    # `--mp-port /dev/x` in two words: pytest reads /dev/x as a test path before the plugin
    # loads, and makes /dev its rootdir; a project ini would be lost.
    pytester.makepyfile("def test_x(): pass")
    port = "/dev/null"
    result = pytester.runpytest("--mp-port", port)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"write --mp-port={port} as one word" in one_line_error(result)


def test_pyserial_urls_pass_through_untouched(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    url = "socket://127.0.0.1:9?logging=debug"  # port 9 (discard): nothing listens
    result = pytester.runpytest(f"--mp-port={url}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"cannot use the board at {url}:" in one_line_error(result)


# -- --mp-mock without a value before a test path ---------------------------------------------


def test_mp_mock_before_a_test_path_is_not_a_profile(pytester: pytest.Pytester) -> None:
    sub = pytester.mkpydir("suite")
    (sub / "test_one.py").write_text("def test_one(): pass\n")
    result = pytester.runpytest("--mp-mock", "suite", "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str()
    result.stdout.fnmatch_lines(["suite/test_one.py::test_one"])


# -- marker checks at collection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "expected"),
    [
        ('requires_feature("lora")', "*requires_feature('lora'): unknown feature 'lora'; known "
                                     "features: asyncio, bigint, bluetooth,*viper, wifi (add your "
                                     "own with the mp_features ini key*"),
        ('requires_feature()', "*requires_feature(): give one or more names as strings"),
        ('requires_feature(3)', "*requires_feature(3): give one or more names as strings"),
        ('requires_firmware("1.x")', "*requires_firmware('1.x'): cannot parse firmware "
                                     "requirement '1.x'*"),
        ('requires_firmware(">=1.20", "latest")', "*cannot parse firmware requirement 'latest'*"),
        ('requires_platform(platform="esp32")', "*takes no keyword arguments"),
        ('mp_reset("reboot")',
         "*mp_reset('reboot'): give one reset policy: clean, soft, hard, none"),
    ],
)  # fmt: skip
def test_bad_markers_fail_collection(pytester: pytest.Pytester, marker: str, expected: str) -> None:
    pytester.makepyfile(
        f"""
        import pytest

        def test_fine():
            pass

        @pytest.mark.{marker}
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    line = one_line_error(result)
    from fnmatch import fnmatch

    prefix = "ERROR: mpsession: test_bad_markers_fail_collection.py::test_marked: "
    assert fnmatch(line, prefix + expected), line
    result.stdout.no_fnmatch_line("*passed*")


def test_project_features_from_ini_and_hook_are_known(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        """
        [pytest]
        mp_features =
            lora: import sx127x
            big_heap: assert __import__("gc").mem_free() > 100000
        """
    )
    pytester.makeconftest(
        """
        def pytest_mpsession_probe_features(probes):
            probes.add("display", "import ssd1306")
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.requires_feature("lora", "big_heap", "display", "threading")
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)  # no board: skipped, but the names were accepted


def test_xdist_more_workers_than_boards_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest_subprocess(
        "-n", "3", "--mp-port=/dev/ttyNOPE0", "--mp-port=/dev/ttyNOPE1"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "mpsession: 3 pytest-xdist workers but 2 board(s) (--mp-port): each worker needs a board "
        "of its own; give one --mp-port per worker or run with -n 2" in one_line_error(result)
    )


def test_settings_resolution_unit(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_mpsession.plugin.options import resolve_settings

    pytester.makeini(
        "[pytest]\nmp_port = /dev/a /dev/b\nmp_baudrate = 9600\nmp_timeout = 2.5\nmp_reset = soft\n"
    )
    config = pytester.parseconfigure()
    settings = resolve_settings(config)
    assert settings.ports == ("/dev/a", "/dev/b")
    assert settings.port_source == "mp_port in tox.ini"
    assert (settings.baudrate, settings.timeout, settings.reset) == (9600, 2.5, "soft")
    assert settings.use_cache
    config = pytester.parseconfigure("--mp-baudrate=57600", "--mp-reset=hard", "--mp-no-cache")
    settings = resolve_settings(config)
    assert (settings.baudrate, settings.reset, settings.use_cache) == (57600, "hard", False)
    monkeypatch.setenv("MP_MOCK", "legacy")
    settings = resolve_settings(pytester.parseconfigure())
    assert settings.ports == ("mpmock://legacy",) and settings.mock == "legacy"
    monkeypatch.setenv("MP_MOCK", "0")
    monkeypatch.setenv("MP_PORT", "hwgrep://2e8a:0005 socket://h:1")
    settings = resolve_settings(pytester.parseconfigure())
    assert settings.ports == ("hwgrep://2e8a:0005", "socket://h:1")
    assert settings.port_source == "MP_PORT"


@pytest.mark.parametrize("off", ["0", "false", "", "off"])
def test_mp_mock_off_in_the_environment_switches_off_the_ini_mp_mock(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, off: str
) -> None:
    pytester.makeini("[pytest]\nmp_mock = esp32\n")
    pytester.makepyfile(DEVICE_TESTS)
    monkeypatch.setenv("MP_MOCK", off)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(["*no MicroPython board configured*"])


def test_mp_mock_off_keeps_an_ini_port_and_the_command_line_wins(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_mpsession.plugin.options import resolve_settings

    monkeypatch.setenv("MP_MOCK", "0")
    pytester.makeini("[pytest]\nmp_mock = esp32\n")
    assert resolve_settings(pytester.parseconfigure()).ports == ()
    assert resolve_settings(pytester.parseconfigure("--mp-mock=rp2")).ports == ("mpmock://rp2",)
    pytester.makeini("[pytest]\nmp_port = /dev/ttyX\n")
    settings = resolve_settings(pytester.parseconfigure())
    assert settings.ports == ("/dev/ttyX",) and settings.mock is None


def test_mp_timeout_environment_variable(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_mpsession.plugin.options import resolve_settings

    pytester.makeini("[pytest]\nmp_timeout = 7\n")
    assert resolve_settings(pytester.parseconfigure()).timeout == 7.0
    monkeypatch.setenv("MP_TIMEOUT", "2.5")  # the environment over the ini file
    assert resolve_settings(pytester.parseconfigure()).timeout == 2.5
    # the command line over the environment
    assert resolve_settings(pytester.parseconfigure("--mp-timeout=30")).timeout == 30.0
    monkeypatch.setenv("MP_TIMEOUT", " ")  # set but blank: as if unset
    assert resolve_settings(pytester.parseconfigure()).timeout == 7.0
    monkeypatch.setenv("MP_TIMEOUT", "soon")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert one_line_error(result) == (
        "ERROR: mpsession: MP_TIMEOUT 'soon' is not a timeout: give a positive number of "
        "seconds such as 10"
    )


def test_mp_mock_before_a_test_path_loads_that_paths_conftest(pytester: pytest.Pytester) -> None:
    # `pytest --mp-mock examples`: examples/conftest.py defines a feature through the hook;
    # it must be known before collection checks the markers.
    sub = pytester.mkpydir("suite")
    (sub / "conftest.py").write_text(
        "def pytest_mpsession_probe_features(probes):\n    probes.add('lora', 'import sx127x')\n"
    )
    (sub / "test_radio.py").write_text(
        "import pytest\n\n@pytest.mark.requires_feature('lora')\ndef test_radio():\n    pass\n"
    )
    result = pytester.runpytest("--mp-mock", "suite", "--collect-only", "-q")
    assert result.ret == 0, result.stderr.str() + result.stdout.str()
    result.stdout.fnmatch_lines(["suite/test_radio.py::test_radio"])


def test_xdist_missing_port_is_one_line_before_workers_start(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile("def test_x(device_session): pass")
    result = pytester.runpytest_subprocess(
        "-n", "2", "--mp-port=/dev/ttyNOPE0", "--mp-port=/dev/ttyNOPE1"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "cannot use the board at /dev/ttyNOPE0" in one_line_error(result)


def test_usb_serial_number_from_pyserial(monkeypatch: pytest.MonkeyPatch) -> None:
    from serial.tools import list_ports
    from serial.tools.list_ports_common import ListPortInfo

    from pytest_mpsession.plugin import boards

    info = ListPortInfo("/dev/ttyACM7", skip_link_detection=True)
    info.serial_number = "E66138935F2D6F28"
    info.vid, info.pid = 0x2E8A, 0x0005
    info.hwid = "USB VID:PID=2E8A:0005 SER=E66138935F2D6F28"
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: [info])
    monkeypatch.setattr(list_ports, "grep", lambda pattern, **k: iter([info]))
    assert boards.usb_serial_number("/dev/ttyACM7") == "E66138935F2D6F28"
    assert boards.usb_serial_number("hwgrep://2E8A:0005") == "E66138935F2D6F28"
    assert boards.usb_serial_number("/dev/ttyACM9") is None
    assert boards.usb_serial_number("socket://localhost:2217") is None


def test_header_line_names_the_usb_serial_number() -> None:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.plugin.boards import Board
    from pytest_mpsession.plugin.options import Settings

    board = Board(port="/dev/ttyACM0", settings=Settings(), probes=FeatureProbes())
    assert board.describe() == "board at /dev/ttyACM0 (not connected)"
    board.capabilities = DeviceCapabilities(
        firmware_version="1.22.0",
        version=(1, 22, 0),
        device_type="esp32",
        features=frozenset({"threading", "float"}),
    )
    board.usb_serial = "3C61058A2D34"
    assert board.describe() == (
        "micropython 1.22.0 on esp32 at /dev/ttyACM0 (serial 3C61058A2D34), "
        "features: float, threading"
    )


def test_an_inherited_xdist_worker_variable_does_not_make_a_worker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A pytest run started by a test under xdist inherits PYTEST_XDIST_WORKER=gw1; it is not a
    # worker, and its single board is its own.
    from pytest_mpsession.plugin.boards import port_for_worker, worker_id
    from pytest_mpsession.plugin.options import Settings

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    config = pytester.parseconfigure()
    assert worker_id(config) is None
    settings = Settings(ports=("/dev/ttyACM0",), port_source="--mp-port")
    assert port_for_worker(settings, None, None) == "/dev/ttyACM0"
    assert port_for_worker(Settings(ports=("a", "b")), "gw1", 2) == "b"
    with pytest.raises(pytest.UsageError, match="3 pytest-xdist workers but 2 board"):
        port_for_worker(Settings(ports=("a", "b")), "gw0", 3)


# -- requires_firmware: PEP 440 specifiers (packaging) on MicroPython versions ------------------


@pytest.mark.parametrize(
    ("spec", "firmware", "ok"),
    [
        (">=1.20", "v1.20.0-34-gd64154c73", True),  # a git build is its release
        (">=1.29", "1.29.0-preview", True),  # MicroPython's preview is the version it names
        ("<1.29", "1.29.0-preview", False),
        ("1.9.2", "v1.9.2", True),  # a bare version is ==
        ("==1.9", "1.9.0", True),  # 1.9 is 1.9.0
        ("!=1.22.*,>=1.20", "1.22.3", False),
        ("!=1.22.*,>=1.20", "1.23.0", True),
        ("~=1.20", "1.24.1", True),
        ("~=1.20.1", "1.21.0", False),
        (">1.22", "1.22.0", False),
        ("<=1.22", "1.22", True),
    ],
)
def test_requires_firmware_specifiers_on_micropython_versions(
    spec: str, firmware: str, ok: bool
) -> None:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    from pytest_mpsession.capabilities import FirmwareSpec, parse_version

    version = parse_version(firmware)
    assert FirmwareSpec(spec).matches(version) is ok
    # the comparison is packaging's, on the release the firmware string names
    pep440 = spec if not spec[0].isdigit() else "==" + spec
    assert SpecifierSet(pep440).contains(Version(".".join(map(str, version)))) is ok


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (">=1.23.0rc1", "MicroPython versions are up to three numbers"),
        (">=1.2.3.4", "MicroPython versions are up to three numbers"),
        ("==1.22.post1", "MicroPython versions are up to three numbers"),
        ("==1.22+local", "cannot parse firmware requirement"),
        ("===1.22", "cannot parse firmware requirement"),
        ("~=1", "cannot parse firmware requirement"),
        (">=1.*", "'.*' only goes with == or !="),
        (">=1.20;<2", "cannot parse firmware requirement"),
    ],
)
def test_requires_firmware_rejects_what_is_not_a_micropython_version(
    spec: str, message: str
) -> None:
    from pytest_mpsession.capabilities import FirmwareSpec

    with pytest.raises(ValueError, match=re.escape(message)):
        FirmwareSpec(spec)


def test_a_bad_requires_firmware_is_a_collection_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.requires_firmware('>=1.23.0rc1')\ndef test_x():\n    pass\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "requires_firmware('>=1.23.0rc1'): cannot parse firmware requirement" in (
        one_line_error(result)
    )
