"""Settings: the ``mpsession`` option group, its ini keys and environment variables, resolved
command line > environment variable > ini key into one :class:`Settings`.

A bad value is a one-line :class:`pytest.UsageError` naming the value and where it came
from. Also here: the command-line fixes that must happen before pytest picks its rootdir
(``--mp-mock`` before a test path, ``--mp-port PATH`` in two words).

A module added to the plugin that has options of its own adds them to the same group
(:func:`option_group`), each with an ini key sharing its help text.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_mpsession.plugin.state import STATE, PluginState

__all__ = [
    "DEFAULT_BAUDRATE",
    "DEFAULT_TIMEOUT",
    "KNOWN_PROFILES",
    "MOCK_SCHEME",
    "RESET_POLICIES",
    "Settings",
    "one_line",
    "option_group",
    "parse_feature_lines",
    "probe_syntax_error",
    "resolve_settings",
]

# -- help texts, shared by the command-line options and their ini keys --------------------------

HELP_PORT = (
    "MicroPython board to test on: a serial device (/dev/ttyACM0, COM3) or any pyserial URL "
    "(socket://host:port, rfc2217://host:port, hwgrep://VID:PID, mpmock://PROFILE). Repeat for a "
    "pool of boards, one per pytest-xdist worker. Env: MP_PORT (whitespace-separated)."
)
HELP_MOCK = (
    "run against the built-in board emulator (the real MicroPython interpreter) instead of "
    "hardware; PROFILE: generic (default), esp32, rp2, stm32, unix, legacy, or one of "
    "MP_MOCK_PROFILES. Env: MP_MOCK (1 or a profile name; 0 switches off an ini mp_mock)."
)
HELP_BAUDRATE = "baud rate of the board's serial port (default: 115200)."
HELP_TIMEOUT = "default timeout of each board call, in seconds (default: 10). Env: MP_TIMEOUT."
HELP_RESET = (
    "what device_session does to the board after each test: clean (clear the session's "
    "namespace and resources; the default), soft (also soft-reset), hard (also hard-reset), "
    "none (leave the board as the test left it)."
)
HELP_NO_CACHE = "probe the board's capabilities again instead of reading them from pytest's cache."
HELP_FEATURES = (
    "project feature probes, one 'name: board code' a line; the board has the feature when the "
    "code runs without raising. Use the names in @pytest.mark.requires_feature."
)

RESET_POLICIES = ("clean", "soft", "hard", "none")
KNOWN_PROFILES = ("generic", "esp32", "rp2", "stm32", "unix", "legacy")
DEFAULT_BAUDRATE = 115200
DEFAULT_TIMEOUT = 10.0
MOCK_SCHEME = "mpmock://"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The plugin's resolved configuration (command line > environment > ini)."""

    ports: tuple[str, ...] = ()
    #: where the ports came from, for messages: "--mp-port", "MP_PORT", "mp_port (ini)", ...
    port_source: str = ""
    mock: str | None = None
    baudrate: int = DEFAULT_BAUDRATE
    timeout: float = DEFAULT_TIMEOUT
    reset: str = "clean"
    use_cache: bool = True
    features: tuple[tuple[str, str], ...] = ()

    @property
    def configured(self) -> bool:
        """True when a board (real or emulated) was asked for."""
        return bool(self.ports)


def _ini_source(config: pytest.Config, key: str) -> str:
    where = config.inipath.name if config.inipath is not None else "the ini file"
    return f"{key} in {where}"


def _ini(config: pytest.Config, key: str) -> Any:
    try:
        return config.getini(key)
    except ValueError:  # pragma: no cover - only when our addini did not run
        return None


def _mock_value(raw: str, source: str) -> str | None:
    """``MP_MOCK``/``mp_mock`` text -> a profile name, or ``None`` for "off"."""
    value = raw.strip()
    if value.lower() in _FALSE:
        return None
    if value.lower() in _TRUE:
        return "generic"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", value):
        raise pytest.UsageError(
            f"mpsession: {source}={raw!r} is not an emulator profile name: use 1 for the "
            "generic board or a profile such as esp32 or legacy"
        )
    return value


def _select_board(config: pytest.Config) -> tuple[tuple[str, ...], str, str | None]:
    """(ports, where they came from, mock profile), taking the first source that names a
    board: the command line, then the environment, then the ini file. One source naming both
    a port and the emulator is an error."""
    opt_ports: list[str] | None = config.getoption("mp_port", None)
    opt_mock: str | None = config.getoption("mp_mock", None)
    env_ports = os.environ.get("MP_PORT", "")
    env_mock = os.environ.get("MP_MOCK", "")
    ini_ports: list[str] = list(_ini(config, "mp_port") or [])
    ini_mock = str(_ini(config, "mp_mock") or "")
    if "MP_MOCK" in os.environ and _mock_value(env_mock, "MP_MOCK") is None:
        # MP_MOCK=0 (false, no, off, or empty) is a choice: no emulator, whatever the ini says
        ini_mock = ""

    candidates: list[tuple[str, str, list[str], str | None]] = [
        ("--mp-port", "--mp-mock", list(opt_ports or []), opt_mock),
        ("MP_PORT", "MP_MOCK", shlex.split(env_ports), _mock_value(env_mock, "MP_MOCK")),
        (
            _ini_source(config, "mp_port"),
            _ini_source(config, "mp_mock"),
            ini_ports,
            _mock_value(ini_mock, _ini_source(config, "mp_mock")),
        ),
    ]
    for port_src, mock_src, ports, mock in candidates:
        if ports and mock is not None:
            raise pytest.UsageError(
                f"mpsession: {port_src} and {mock_src} exclude each other: test on a board "
                "(--mp-port) or on the emulator (--mp-mock), not both"
            )
        if mock is not None:
            profile = mock or "generic"
            _check_profile(profile, mock_src)
            return ((MOCK_SCHEME + profile,), mock_src, profile)
        if ports:
            for port in ports:
                if not port.strip():
                    raise pytest.UsageError(
                        f"mpsession: {port_src} gives an empty port: name a serial device or URL"
                    )
            return (tuple(ports), port_src, None)
    return ((), "", None)


def _check_profile(profile: str, source: str) -> None:
    """An unknown emulator profile is a usage error now, not a failure at the first test."""
    try:
        from pytest_mpsession.emulator.profiles import load_profile
    except ImportError:  # pragma: no cover - the emulator is part of the package
        return
    try:
        load_profile(profile)
    except Exception as exc:
        raise pytest.UsageError(f"mpsession: {one_line(exc)} (from {source})") from None


def _number(
    config: pytest.Config,
    option: str,
    ini_key: str,
    kind: Callable[[str], float],
    default: float,
    what: str,
    env: str | None = None,
) -> float:
    cli = config.getoption(option.lstrip("-").replace("-", "_"), None)
    if cli is not None:
        raw, source = str(cli), option
    elif env is not None and os.environ.get(env, "").strip():
        raw, source = os.environ[env], env
    else:
        ini = _ini(config, ini_key)
        if ini in (None, ""):
            return default
        raw, source = str(ini), _ini_source(config, ini_key)
    try:
        value = kind(raw.strip())
    except ValueError:
        value = -1
    if not value > 0 or value != value or value == float("inf"):
        raise pytest.UsageError(f"mpsession: {source} {raw!r} is not {what}")
    return value


def _reset_policy(config: pytest.Config) -> str:
    cli = config.getoption("mp_reset", None)
    if cli is not None:
        raw, source = str(cli), "--mp-reset"
    else:
        raw = str(_ini(config, "mp_reset") or "")
        if not raw.strip():
            return "clean"
        source = _ini_source(config, "mp_reset")
    if raw.strip() not in RESET_POLICIES:
        raise pytest.UsageError(
            f"mpsession: {source} {raw!r} is not a reset policy: use one of "
            + ", ".join(RESET_POLICIES)
        )
    return raw.strip()


def probe_syntax_error(name: str, code: str) -> str | None:
    """Why the probe for feature ``name`` cannot run anywhere (it is not valid Python, so not
    valid MicroPython either), or ``None``. A probe that does not compile would only ever be
    a feature the board lacks, silently."""
    try:
        compile(code, f"<probe {name}>", "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset and "\n" not in code else ""
        return f"the probe for feature {name!r} is not valid Python ({exc.msg}{where}): {code!r}"
    except ValueError as exc:  # a NUL byte
        return f"the probe for feature {name!r} cannot be compiled ({exc}): {code!r}"
    return None


def parse_feature_lines(lines: Sequence[str], source: str) -> tuple[tuple[str, str], ...]:
    """``mp_features`` ini lines (``name: board code``) -> ``(name, code)`` pairs; a line
    that is not ``name: probe``, a probe that does not compile, or a built-in feature's name
    (whose probe is the plugin's) is a usage error."""
    from pytest_mpsession.capabilities import KNOWN_FEATURES, FeatureProbes

    check = FeatureProbes(builtin=False)
    out: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, code = line.partition(":")
        if not sep:
            raise pytest.UsageError(
                f"mpsession: {source}: {line.strip()!r} is not 'name: probe' (e.g. "
                "'lora: import sx127x')"
            )
        name, code = name.strip(), code.strip()
        try:
            check.add(name, code)
        except ValueError as exc:
            raise pytest.UsageError(f"mpsession: {source}: {exc}") from None
        if name in KNOWN_FEATURES:
            raise pytest.UsageError(
                f"mpsession: {source}: {name!r} is a built-in feature, probed by the plugin; "
                "give your probe a name of its own"
            )
        if name in dict(out):
            raise pytest.UsageError(
                f"mpsession: {source}: feature {name!r} is given twice; keep one probe"
            )
        error = probe_syntax_error(name, code)
        if error is not None:
            raise pytest.UsageError(f"mpsession: {source}: {error}")
        out.append((name, code))
    return tuple(out)


def resolve_settings(config: pytest.Config) -> Settings:
    """Resolve every option; ``pytest.UsageError`` naming the bad value and its source."""
    ports, source, mock = _select_board(config)
    baudrate = int(
        _number(
            config,
            "--mp-baudrate",
            "mp_baudrate",
            int,
            DEFAULT_BAUDRATE,
            "a baud rate: give a positive whole number such as 115200",
        )
    )
    timeout = _number(
        config, "--mp-timeout", "mp_timeout", float, DEFAULT_TIMEOUT,
        "a timeout: give a positive number of seconds such as 10", env="MP_TIMEOUT",
    )  # fmt: skip
    features = parse_feature_lines(
        list(_ini(config, "mp_features") or []), _ini_source(config, "mp_features")
    )
    return Settings(
        ports=ports,
        port_source=source,
        mock=mock,
        baudrate=baudrate,
        timeout=timeout,
        reset=_reset_policy(config),
        use_cache=not config.getoption("mp_no_cache", False),
        features=features,
    )


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (its type name when it has no message)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# -- hooks: options and the command line ----------------------------------------------------


def option_group(parser: pytest.Parser) -> pytest.OptionGroup:
    """The ``mpsession`` option group, whichever module of the plugin asks first."""
    return parser.getgroup("mpsession", "MicroPython boards (pytest-mpsession)")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``mpsession`` option group and its ini keys."""
    group = option_group(parser)
    group.addoption(
        "--mp-port", action="append", dest="mp_port", metavar="PORT", default=None, help=HELP_PORT
    )
    group.addoption(
        "--mp-mock",
        dest="mp_mock",
        nargs="?",
        const="generic",
        default=None,
        metavar="PROFILE",
        help=HELP_MOCK,
    )
    group.addoption("--mp-baudrate", dest="mp_baudrate", metavar="N", help=HELP_BAUDRATE)
    group.addoption("--mp-timeout", dest="mp_timeout", metavar="S", help=HELP_TIMEOUT)
    group.addoption(
        "--mp-reset", dest="mp_reset", metavar="{clean,soft,hard,none}", help=HELP_RESET
    )
    group.addoption(
        "--mp-no-cache", dest="mp_no_cache", action="store_true", default=False, help=HELP_NO_CACHE
    )
    parser.addini("mp_port", HELP_PORT, type="args", default=[])
    parser.addini("mp_mock", HELP_MOCK, default="")
    parser.addini("mp_baudrate", HELP_BAUDRATE, default="")
    parser.addini("mp_timeout", HELP_TIMEOUT, default="")
    parser.addini("mp_reset", HELP_RESET, default="")
    parser.addini("mp_features", HELP_FEATURES, type="linelist", default=[])


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    """Let ``--mp-mock`` take no value before a test path: ``pytest --mp-mock examples/``.

    argparse would read ``examples/`` as the profile; when the word after a bare
    ``--mp-mock`` is an existing path (or a node id), it is a test path, not a profile.
    And ``--mp-port /dev/ttyACM0`` in two words: see :func:`_rerun_with_ports_joined`.
    """
    _rerun_with_ports_joined(early_config)
    changed = False
    for i, arg in enumerate(args[:-1]):
        if arg == "--":
            break
        if arg == "--mp-mock":
            nxt = args[i + 1]
            path = nxt.split("::", 1)[0]
            if not nxt.startswith("-") and ("::" in nxt or os.path.exists(path)):
                args[i] = "--mp-mock=generic"
                changed = True
    if changed:
        # pytest finds the initial conftests (``examples/conftest.py``) from the test paths
        # it parsed before this plugin loaded, when the path still looked like a profile.
        old = early_config.known_args_namespace
        namespace = parser.parse_known_args(args, namespace=copy.copy(early_config.option))
        namespace.confcutdir = old.confcutdir
        early_config.known_args_namespace = namespace


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Resolve the settings (bad ones are usage errors) into the plugin's state, before the
    plugin's other ``pytest_configure`` hooks read it."""
    if config.getoption("help", False) or config.getoption("version", False):
        config.stash[STATE] = PluginState(Settings())
        return
    settings = resolve_settings(config)
    config.stash[STATE] = PluginState(settings)
    _check_rootdir(config)


#: the files pytest takes its configuration from, and what marks one as pytest's
_INI_FILES = (
    ("pytest.ini", ""),
    (".pytest.ini", ""),
    ("pyproject.toml", "[tool.pytest"),
    ("tox.ini", "[pytest]"),
    ("setup.cfg", "[tool:pytest]"),
)


def _has_ini(folder: Path) -> bool:
    """Whether pytest would take its configuration from a file in ``folder``."""
    for name, marker in _INI_FILES:
        path = folder / name
        try:
            if path.is_file() and marker in path.read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            continue
    return False


def _rootdir_is_the_projects(config: pytest.Config) -> bool:
    """Whether pytest would have chosen this rootdir and ini file from the invocation folder
    alone (with no test path on the command line)."""
    root = config.rootpath
    here = config.invocation_params.dir
    if config.inipath is None:
        # no ini file: from the invocation folder, the rootdir is that folder (or the nearest
        # one above it with a setup.py); an ini file there would have been found
        if any(_has_ini(d) for d in (here, *here.parents)):
            return False
        return root == here or (root in here.parents and (root / "setup.py").is_file())
    ini_dir = config.inipath.parent
    if not (ini_dir == here or ini_dir in here.parents):
        return False
    # and no project ini between the invocation folder and the one pytest used
    for folder in (here, *here.parents):
        if folder == ini_dir:
            return True
        if _has_ini(folder):
            return False
    return True  # pragma: no cover - ini_dir is one of here's folders


def _rootdir_taken_from(
    config: pytest.Config, given: Sequence[tuple[str, str]]
) -> tuple[str, str] | None:
    """The ``(option, value)`` whose value pytest took for a test path when it chose its
    rootdir, if any.

    ``--mp-port /dev/ttyACM0`` or ``--mp-board-tests ../board`` (two words) is read as a
    test path before this plugin is loaded, and can make ``/dev`` (or a folder above the
    project) the rootdir: the project's ini file and cache are lost. pytest takes the path
    as given, without resolving a link (``/dev/serial/by-id/usb-...`` makes
    ``/dev/serial/by-id``, or a folder above both it and the project, the rootdir), so the
    folder of the path as written counts, and, for good measure, that of its target. Only
    values written as a word of their own are given here: ``--mp-port=X`` is never a test
    path."""
    root = config.rootpath
    here = config.invocation_params.dir
    for option, value in given:
        if "://" in value or not os.path.exists(os.path.join(here, value)):
            continue
        path = Path(os.path.abspath(os.path.join(here, value)))
        real = Path(os.path.realpath(path))
        # a folder is its own candidate for the rootdir, a file (a device) its parent
        folders = option == "--mp-board-tests"
        near = {p if folders and p.is_dir() else p.parent for p in (path, real)}
        if any(root == p or root in p.parents for p in near):
            if not _rootdir_is_the_projects(config):
                return option, value
    return None


def _check_rootdir(config: pytest.Config) -> None:
    """Say so plainly instead of running with the wrong rootdir (when re-running pytest
    with the value in one word was not possible)."""
    _fixed, given = _join_path_values(config.invocation_params.args)
    taken = _rootdir_taken_from(config, given)
    if taken is not None:
        option, value = taken
        env = " (or set MP_PORT)" if option == "--mp-port" else ""
        raise pytest.UsageError(
            f"mpsession: pytest read {value} (the value of {option}) as a test path and made "
            f"{config.rootpath} its rootdir; write {option}={value} as one word{env}"
        )


_REEXEC_ENV = "_MPSESSION_REEXEC"


#: this plugin's options whose value is a path pytest may take for a test path
_PATH_OPTIONS = ("--mp-port", "--mp-board-tests")


def _join_path_values(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """``--mp-port X`` -> ``--mp-port=X`` (and ``--mp-board-tests``) in ``argv``; (the new
    argv, the ``(option, value)`` pairs joined)."""
    out: list[str] = []
    joined: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg in _PATH_OPTIONS and i + 1 < len(argv):
            out.append(f"{arg}={argv[i + 1]}")
            joined.append((arg, argv[i + 1]))
            i += 2
            continue
        out.append(arg)
        i += 1
    return out, joined


def _rerun_with_ports_joined(early_config: pytest.Config) -> None:
    """When ``--mp-port /dev/ttyACM0`` on the command line made pytest pick the wrong
    rootdir (see :func:`_rootdir_taken_from`), run the same command again with the port in
    one word, so ``pytest --mp-port /dev/ttyACM0`` just works. Only for a real command line
    (not ``pytest.main()`` in a process that would be replaced), once."""
    if os.name != "posix" or os.environ.get(_REEXEC_ENV):
        return
    argv = sys.argv[1:]
    if tuple(argv) != tuple(early_config.invocation_params.args):
        return
    fixed, given = _join_path_values(argv)
    if not given or _rootdir_taken_from(early_config, given) is None:
        return
    os.environ[_REEXEC_ENV] = "1"
    # pytest already captures fds 1 and 2 at this point: give the new process the real ones.
    capman = early_config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.stop_global_capturing()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, [sys.executable, "-m", "pytest", *fixed])
    except OSError:
        return  # the usage error at configure time explains what to do instead
