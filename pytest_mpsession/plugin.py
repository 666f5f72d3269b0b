"""pytest glue for pytest-mpsession: options, fixtures, markers and report hooks.

Hooks and fixtures only; the work is delegated to the session core
(:mod:`pytest_mpsession.session`), the communicator and :mod:`pytest_mpsession.capabilities`.
This module is loaded by every pytest run in an environment where the package is installed
(its ``pytest11`` entry point), so everything heavy is imported lazily, inside the hooks that
need it, and nothing happens unless a board is configured.

Settings are resolved command line, then environment variable, then ini key. A board is
opened at session start (so its description can go in the report header, and a port that
cannot be opened stops the run before any test, with exit code 4); under pytest-xdist each
worker opens its own board from the ``--mp-port`` pool and the controller opens none.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shlex
import sys
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.session.manager import DeviceSessionManager
    from pytest_mpsession.session.session import DeviceSession

__all__ = [
    "KNOWN_PROFILES",
    "RESET_POLICIES",
    "Settings",
    "device_capabilities",
    "device_session",
    "device_session_manager",
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
    "MP_MOCK_PROFILES. Env: MP_MOCK (1 or a profile name)."
)
HELP_BAUDRATE = "baud rate of the board's serial port (default: 115200)."
HELP_TIMEOUT = "default timeout of each board call, in seconds (default: 10)."
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
DEVICE_FIXTURES = frozenset({"device_session_manager", "device_capabilities", "device_session"})
BOARD_MARKERS = ("requires_feature", "requires_platform", "requires_firmware")

NO_BOARD_REASON = (
    "no MicroPython board configured: give --mp-port PORT (or MP_PORT, or the mp_port ini key) "
    "to test on a board, or --mp-mock to test on the emulator"
)

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
        raise pytest.UsageError(f"mpsession: {_one_line(exc)} (from {source})") from None


def _number(
    config: pytest.Config,
    option: str,
    ini_key: str,
    kind: Callable[[str], float],
    default: float,
    what: str,
) -> float:
    cli = config.getoption(option.lstrip("-").replace("-", "_"), None)
    if cli is not None:
        raw, source = str(cli), option
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


def parse_feature_lines(lines: Sequence[str], source: str) -> tuple[tuple[str, str], ...]:
    """``mp_features`` ini lines (``name: board code``) -> ``(name, code)`` pairs."""
    from pytest_mpsession.capabilities import FeatureProbes

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
        try:
            check.add(name.strip(), code.strip())
        except ValueError as exc:
            raise pytest.UsageError(f"mpsession: {source}: {exc}") from None
        out.append((name.strip(), code.strip()))
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
        "a timeout: give a positive number of seconds such as 10",
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


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# -- the board of this process -----------------------------------------------------------------


@dataclass
class Board:
    """This process's board: its port, its connection, its capabilities."""

    port: str
    settings: Settings
    probes: FeatureProbes
    worker: str | None = None
    communicator: Communicator | None = None
    manager: DeviceSessionManager | None = None
    capabilities: DeviceCapabilities | None = None
    usb_serial: str | None = None
    from_cache: bool = False
    #: why this board cannot be used (an xdist worker reports it per test, not by crashing)
    error: str | None = None

    def describe(self) -> str:
        """``micropython 1.22.0 on esp32 at /dev/ttyACM0 (serial 3C61...), features: ...``."""
        caps = self.capabilities
        where = f" at {self.port}"
        if self.usb_serial:
            where += f" (serial {self.usb_serial})"
        if caps is None:
            return f"board{where} (not connected)"
        feats = ", ".join(sorted(caps.features)) or "none"
        return f"{caps.describe()}{where}, features: {feats}"


def usb_serial_number(port: str) -> str | None:
    """The USB serial number behind ``port`` where pyserial can tell (a device path or a
    ``hwgrep://`` URL), else ``None``."""
    try:
        from serial.tools import list_ports  # type: ignore[import-untyped,unused-ignore]

        if port.startswith("hwgrep://"):
            pattern = port[len("hwgrep://") :].split("&", 1)[0]
            for info in list_ports.grep(pattern):
                return info.serial_number or None
            return None
        if "://" in port:
            return None
        real = os.path.realpath(port)
        for info in list_ports.comports():
            if info.device in (port, real) or os.path.realpath(info.device) == real:
                return info.serial_number or None
    except Exception:  # the serial number is decoration: never fail a run over it
        return None
    return None


def connect_board(config: pytest.Config, board: Board) -> None:
    """Open the board, find its capabilities (pytest's cache first), start its manager.

    Any failure is a :class:`pytest.UsageError` with one line saying what went wrong.
    """
    from pytest_mpsession.capabilities import DeviceCapabilities, cache_key, detect, identify
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.errors import MpSessionError
    from pytest_mpsession.session.manager import DeviceSessionManager

    settings = board.settings
    try:
        comm = Communicator.open(board.port, baudrate=settings.baudrate, timeout=settings.timeout)
    except (MpSessionError, OSError, ValueError) as exc:
        raise pytest.UsageError(
            f"mpsession: cannot use the board at {board.port}: {_one_line(exc)}"
        ) from None
    board.communicator = comm
    try:
        cache = getattr(config, "cache", None) if settings.use_cache else None
        caps: DeviceCapabilities | None = None
        # A small first exchange: who the board is (the cache key), and whether it has
        # raw-paste (an old board without it is then probed in small pieces).
        ident = identify(comm, timeout=settings.timeout)
        if cache is not None:
            key = cache_key(ident.unique_id, ident.firmware_version, board.probes)
            data = cache.get(key, None) if key else None
            if isinstance(data, dict):
                try:
                    caps = DeviceCapabilities.from_dict(data)
                    board.from_cache = True
                except ValueError:
                    caps = None
        if caps is None:
            caps = detect(comm, board.probes, timeout=settings.timeout, identity=ident)
            key = cache_key(caps.unique_id, caps.firmware_version, board.probes)
            if cache is not None and key:
                cache.set(key, caps.to_dict())
            if comm.raw_paste is False:
                # Old firmware, probed in small pieces: the modules the probes imported and
                # the raw REPL's grown buffer hold RAM a 16 KB board needs for the tests.
                # Nothing of the user's is on the board yet, so a soft reset gives it back.
                comm.soft_reset(timeout=settings.timeout)
        board.capabilities = caps
        manager = DeviceSessionManager(comm, probes=board.probes, capabilities=caps)
    except (MpSessionError, OSError, ValueError) as exc:
        _close_quietly(comm)
        board.communicator = None
        raise pytest.UsageError(
            f"mpsession: the board at {board.port} does not work as a MicroPython board: "
            f"{_one_line(exc)}"
        ) from None
    board.manager = manager
    board.usb_serial = usb_serial_number(board.port)
    hook = config.hook
    manager.add_listener(
        "state_changed",
        lambda old, new: hook.pytest_mpsession_state_changed(manager=manager, old=old, new=new),
    )
    manager.add_listener(
        "capabilities_changed",
        lambda caps: hook.pytest_mpsession_capabilities(capabilities=caps),
    )
    hook.pytest_mpsession_capabilities(capabilities=manager.capabilities)


def _close_quietly(obj: Any) -> None:
    try:
        obj.close()
    except Exception:  # closing after a failure: the first error is the one to report
        pass


def disconnect_board(board: Board) -> None:
    """End every session and close the port (errors are not worth failing the run)."""
    manager, board.manager = board.manager, None
    if manager is not None:
        _close_quietly(manager)  # every session cleaned up, then the port closed
    comm, board.communicator = board.communicator, None
    if comm is not None:
        _close_quietly(comm)


# -- plugin state --------------------------------------------------------------------------------


@dataclass
class _State:
    settings: Settings
    probes: FeatureProbes | None = None
    board: Board | None = None
    #: per-worker board descriptions collected by the xdist controller
    worker_boards: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the board failed and did not come back during this test: (test id, reason); the
    #: next device test tries one recovery first
    fault: tuple[str, str] | None = None
    #: the recovery after ``fault`` failed: every later device test skips with this reason
    broken: str | None = None
    #: device tests skipped because of ``broken``
    broken_skips: int = 0
    #: the xdist controller: per worker, (broken reason, tests skipped for it)
    worker_broken: dict[str, tuple[str, int]] = field(default_factory=dict)


_STATE = pytest.StashKey[_State]()
_CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def _state(config: pytest.Config) -> _State:
    return config.stash[_STATE]


def _worker_id(config: pytest.Config) -> str | None:
    # Only pytest-xdist's own workerinput: PYTEST_XDIST_WORKER is inherited by every
    # subprocess a worker starts (a pytest run inside a test would think it is a worker).
    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict) and "workerid" in workerinput:
        return str(workerinput["workerid"])
    return None


def _is_xdist_controller(config: pytest.Config) -> bool:
    if getattr(config, "workerinput", None) is not None:
        return False
    return bool(getattr(config.option, "numprocesses", None)) and (
        getattr(config.option, "dist", "no") != "no"
    )


def _shared_port(ports: Sequence[str]) -> bool:
    """One emulator URL may serve any number of workers: each opens its own virtual board."""
    return len(ports) == 1 and ports[0].startswith(MOCK_SCHEME)


def _port_for_worker(settings: Settings, worker: str | None, count: int | None) -> str:
    ports = settings.ports
    if worker is None or _shared_port(ports):
        return ports[0]
    match = re.search(r"(\d+)$", worker)
    index = int(match.group(1)) if match else 0
    if index >= len(ports) or (count is not None and count > len(ports)):
        raise pytest.UsageError(_pool_message(count or index + 1, settings))
    return ports[index]


def _pool_message(workers: int, settings: Settings) -> str:
    return (
        f"mpsession: {workers} pytest-xdist workers but {len(settings.ports)} board(s) "
        f"({settings.port_source}): each worker needs a board of its own; give one --mp-port per "
        f"worker or run with -n {len(settings.ports)}"
    )


# -- hooks: set-up --------------------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the ``pytest_mpsession_*`` hookspecs."""
    from pytest_mpsession import benchmark, hookspecs

    pluginmanager.add_hookspecs(hookspecs)
    # device_benchmark and its pytest-benchmark hooks (registered before pytest-benchmark's
    # pytest_configure compares machine infos)
    if not pluginmanager.is_registered(benchmark):
        pluginmanager.register(benchmark, "mpsession-benchmark")


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``mpsession`` option group and its ini keys."""
    group = parser.getgroup("mpsession", "MicroPython boards (pytest-mpsession)")
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


MARKERS = (
    "requires_feature(*features): skip the test unless the board has every one of these "
    "features (threading, asyncio, float, ... or a project's own from mp_features)",
    "requires_platform(*platforms): skip the test unless the board's sys.platform is one of "
    "these (esp32, rp2, ...)",
    "requires_firmware(*specs): skip the test unless the firmware version matches every "
    "spec ('>=1.20', '>=1.20,<1.23', '==1.22.*')",
    "mp_reset(policy): what device_session does to the board after this test: clean, soft, "
    "hard or none (overrides --mp-reset)",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and resolve the settings (bad ones are usage errors)."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    if config.getoption("help", False) or config.getoption("version", False):
        config.stash[_STATE] = _State(Settings())
        return
    settings = resolve_settings(config)
    config.stash[_STATE] = _State(settings)
    if settings.port_source == "--mp-port":
        _check_rootdir(config, settings.ports)
    if settings.configured and _is_xdist_controller(config):
        workers = int(config.option.numprocesses)
        if workers > len(settings.ports) and not _shared_port(settings.ports):
            raise pytest.UsageError(_pool_message(workers, settings))
        if not config.option.collectonly:
            _check_ports_open(settings)


def _check_ports_open(settings: Settings) -> None:
    """xdist controller: a port that cannot be opened is a usage error before the workers
    start (they open their boards themselves, and a worker that fails is restarted)."""
    from pytest_mpsession.errors import MpSessionError
    from pytest_mpsession.transport import Transport

    for port in settings.ports:
        if port.startswith(MOCK_SCHEME):
            continue
        try:
            Transport.open(port, baudrate=settings.baudrate, timeout=settings.timeout).close()
        except (MpSessionError, OSError, ValueError) as exc:
            raise pytest.UsageError(
                f"mpsession: cannot use the board at {port}: {_one_line(exc)}"
            ) from None


def _rootdir_taken_from(config: pytest.Config, ports: Sequence[str]) -> str | None:
    """The port whose path pytest took for a test path when it chose its rootdir, if any.

    ``--mp-port /dev/ttyACM0`` (two words) is read as a test path before this plugin is
    loaded, and can make ``/dev`` the rootdir: the project's ini file and cache are lost."""
    root = config.rootpath
    here = config.invocation_params.dir
    if here == root or root in here.parents:
        return None
    for port in ports:
        if "://" in port or not os.path.exists(port):
            continue
        real = Path(os.path.realpath(port))
        if root == real.parent or root in real.parents:
            return port
    return None


def _check_rootdir(config: pytest.Config, ports: Sequence[str]) -> None:
    """Say so plainly instead of running with the wrong rootdir (when re-running pytest
    with the port in one word was not possible)."""
    port = _rootdir_taken_from(config, ports)
    if port is not None:
        raise pytest.UsageError(
            f"mpsession: pytest read the port {port} as a test path and made "
            f"{config.rootpath} its rootdir; write --mp-port={port} as one word (or set MP_PORT)"
        )


_REEXEC_ENV = "_MPSESSION_REEXEC"


def _join_port_values(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``--mp-port X`` -> ``--mp-port=X`` in ``argv``; (new argv, the ports joined)."""
    out: list[str] = []
    ports: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg == "--mp-port" and i + 1 < len(argv):
            out.append(f"--mp-port={argv[i + 1]}")
            ports.append(argv[i + 1])
            i += 2
            continue
        out.append(arg)
        i += 1
    return out, ports


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
    fixed, ports = _join_port_values(argv)
    if not ports or _rootdir_taken_from(early_config, ports) is None:
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


def _probes(config: pytest.Config) -> FeatureProbes:
    """The feature probes: built-in, ``mp_features``, then the hook (computed once)."""
    state = _state(config)
    if state.probes is None:
        state.probes = _collect_probes(config, state.settings)
    return state.probes


def _collect_probes(config: pytest.Config, settings: Settings) -> FeatureProbes:
    from pytest_mpsession.capabilities import FeatureProbes

    probes = FeatureProbes()
    for name, code in settings.features:
        probes.add(name, code)
    config.hook.pytest_mpsession_probe_features(probes=probes)
    return probes


def _late_probes(config: pytest.Config, state: _State) -> None:
    """Probes added by conftest files found during collection (below the initial ones):
    known for the marker checks, and run on the board now (one more exchange)."""
    from pytest_mpsession.capabilities import FeatureProbes, detect

    before = _probes(config)
    after = _collect_probes(config, state.settings)
    new = [(name, code) for name, code in after.items() if name not in before]
    if not new:
        return
    state.probes = after
    board = state.board
    if board is None or board.manager is None or board.capabilities is None:
        return
    extra = FeatureProbes(builtin=False)
    for name, code in new:
        extra.add(name, code)
    with board.manager.board(board.settings.timeout) as comm:
        found = detect(comm, extra, timeout=board.settings.timeout).features
    caps = board.manager.capabilities
    caps.features = caps.features | (found & frozenset(extra))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Open this process's board (none on the xdist controller, none with --collect-only)."""
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None or not state.settings.configured:
        return
    probes = _probes(config)
    if _is_xdist_controller(config):
        return
    worker = _worker_id(config)
    workerinput = getattr(config, "workerinput", None)
    count = workerinput.get("workercount") if isinstance(workerinput, dict) else None
    try:
        port = _port_for_worker(state.settings, worker, count)
    except pytest.UsageError as exc:
        if worker is None:
            raise
        port = "?"
        state.board = Board(port=port, settings=state.settings, probes=probes, worker=worker)
        state.board.error = str(exc)
        return
    board = Board(port=port, settings=state.settings, probes=probes, worker=worker)
    state.board = board
    if config.option.collectonly:
        return
    try:
        connect_board(config, board)
    except pytest.UsageError as exc:
        if worker is None:
            raise
        # A worker that raises here crashes and is restarted under another id; instead its
        # device tests fail with this one line.
        board.error = str(exc)
        return
    _record_board(config, board)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close the board (an xdist worker tells the controller whether its board broke)."""
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.board is not None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if state.broken is not None and isinstance(workeroutput, dict):
            workeroutput["mpsession_broken"] = {
                "reason": state.broken,
                "skipped": state.broken_skips,
            }
        disconnect_board(state.board)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the board if the session ended before ``pytest_sessionfinish``."""
    state = config.stash.get(_STATE, None)
    if state is not None and state.board is not None:
        disconnect_board(state.board)


# -- collection: marker checks -----------------------------------------------------------------


def _marker_error(item: pytest.Item, mark: pytest.Mark, message: str) -> pytest.UsageError:
    args = ", ".join([repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()])
    return pytest.UsageError(f"mpsession: {item.nodeid}: {mark.name}({args}): {message}")


def check_markers(item: pytest.Item, known: frozenset[str]) -> None:
    """Validate the item's mpsession markers; ``pytest.UsageError`` for a bad one."""
    from pytest_mpsession.capabilities import FirmwareSpec

    for mark in item.iter_markers():
        if mark.name not in (*BOARD_MARKERS, "mp_reset"):
            continue
        if mark.kwargs:
            raise _marker_error(item, mark, "takes no keyword arguments")
        if not mark.args or not all(isinstance(a, str) for a in mark.args):
            raise _marker_error(item, mark, "give one or more names as strings")
        if mark.name == "requires_feature":
            unknown = [a for a in mark.args if a not in known]
            if unknown:
                raise _marker_error(
                    item,
                    mark,
                    f"unknown feature {', '.join(repr(u) for u in unknown)}; known features: "
                    + ", ".join(sorted(known))
                    + " (add your own with the mp_features ini key or the "
                    "pytest_mpsession_probe_features hook)",
                )
        elif mark.name == "requires_firmware":
            for spec in mark.args:
                try:
                    FirmwareSpec(spec)
                except ValueError as exc:
                    raise _marker_error(item, mark, str(exc)) from None
        elif mark.name == "mp_reset":
            if len(mark.args) != 1 or mark.args[0] not in RESET_POLICIES:
                raise _marker_error(
                    item, mark, "give one reset policy: " + ", ".join(RESET_POLICIES)
                )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every mpsession marker is checked at collection, with or without a board."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    from pytest_mpsession.capabilities import KNOWN_FEATURES

    _late_probes(config, state)
    known = _probes(config).names() | KNOWN_FEATURES
    for item in items:
        check_markers(item, known)
    # Skips are decided now (the board was opened at session start), so pytest reports them
    # at the test's own location, like its own skip marks.
    board = state.board
    caps = board.capabilities if board is not None else None
    for item in items:
        marked = any(item.get_closest_marker(m) for m in BOARD_MARKERS)
        if board is None and state.settings.configured:
            continue  # --collect-only on a configured board: nothing runs
        uses = DEVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if board is None:
            if marked or uses:
                item.add_marker(pytest.mark.skip(reason=NO_BOARD_REASON))
        elif board.error is not None:
            if marked and not uses:  # the fixture reports the board's error
                item.add_marker(pytest.mark.usefixtures("device_session_manager"))
        elif marked and caps is not None:
            reason = skip_reason(item, caps)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


# -- running tests: skips, sessions, reports --------------------------------------------------


def skip_reason(item: pytest.Item, caps: DeviceCapabilities) -> str | None:
    """Why ``item`` cannot run on a board with ``caps`` (None: it can)."""
    from pytest_mpsession.capabilities import FirmwareSpec

    what = f"({caps.describe()})"
    for mark in item.iter_markers(name="requires_feature"):
        missing = [f for f in mark.args if not caps.supports_feature(f)]
        if missing:
            return f"requires_feature: board lacks {', '.join(repr(m) for m in missing)} {what}"
    for mark in item.iter_markers(name="requires_platform"):
        if caps.device_type not in mark.args:
            wanted = ", ".join(repr(p) for p in mark.args)
            return f"requires_platform: board is {caps.device_type!r}, not {wanted} {what}"
    for mark in item.iter_markers(name="requires_firmware"):
        for spec in mark.args:
            if not FirmwareSpec(spec).matches(caps.version):
                return f"requires_firmware: board has {caps.firmware_version}, not {spec!r} {what}"
    return None


def _ensure_connected(config: pytest.Config, board: Board) -> Board:
    if board.manager is None:
        connect_board(config, board)
        _record_board(config, board)
    return board


def _board_or_skip(config: pytest.Config) -> Board:
    state = config.stash.get(_STATE, None)
    board = state.board if state is not None else None
    if board is None:
        pytest.skip(NO_BOARD_REASON)
    if board.error is not None:
        pytest.fail(board.error, pytrace=False)
    return _ensure_connected(config, board)


@pytest.fixture(scope="session")
def device_session_manager(request: pytest.FixtureRequest) -> DeviceSessionManager:
    """The connected :class:`DeviceSessionManager` of this worker's board."""
    board = _board_or_skip(request.config)
    assert board.manager is not None
    return board.manager


@pytest.fixture(scope="session")
def device_capabilities(request: pytest.FixtureRequest) -> DeviceCapabilities:
    """The board's :class:`DeviceCapabilities` (detected once, cached across runs)."""
    board = _board_or_skip(request.config)
    assert board.manager is not None
    return board.manager.capabilities


@pytest.fixture
def device_session(
    request: pytest.FixtureRequest, device_session_manager: DeviceSessionManager
) -> Generator[DeviceSession, None, None]:
    """A fresh :class:`DeviceSession` for the test, cleaned up after it per ``--mp-reset`` or
    the ``mp_reset`` marker, even when the test failed or timed out."""
    config = request.config
    board = _board_or_skip(config)
    mark = request.node.get_closest_marker("mp_reset")
    policy = str(mark.args[0]) if mark is not None and mark.args else board.settings.reset
    session = device_session_manager.create_session(timeout=board.settings.timeout)
    config.hook.pytest_mpsession_session_start(session=session)
    try:
        yield session
    finally:
        report = request.node.stash.get(_CALL_REPORT, None)
        finish_session(
            config,
            device_session_manager,
            session,
            policy,
            interrupted=report is None or not report.passed,
            timeout=board.settings.timeout,
        )


def finish_session(
    config: pytest.Config,
    manager: DeviceSessionManager,
    session: DeviceSession,
    policy: str,
    *,
    interrupted: bool,
    timeout: float,
) -> None:
    """After a test: bring the board back if the test did not pass (it may have left code
    running, or pytest-timeout may have stopped it in the middle of an exchange), then clean
    the session up per ``policy``.

    A board that failed and did not come back (the manager in ERROR, or the communicator
    broken) is left alone here: the session is cleaned on the host only, and the next
    device test tries one recovery (see :func:`pytest_runtest_setup`)."""
    from pytest_mpsession.errors import MpSessionError

    if manager.broken is not None:
        try:
            config.hook.pytest_mpsession_session_finish(session=session)
        finally:
            _cleanup(session, "none", timeout)
        return
    try:
        if interrupted:
            # Ctrl-C and resync: the raw-REPL conversation may be cut mid-exchange (the
            # communicator escalates to a full recovery when Ctrl-C is not enough).
            try:
                manager.communicator.interrupt(timeout)
            except MpSessionError:
                pass  # the manager's state and ``broken`` say what is left of the board
        config.hook.pytest_mpsession_session_finish(session=session)
    finally:
        if manager.broken is not None:
            policy = "none"  # nothing to clean on a board that is gone
        _cleanup(session, policy, timeout)


def _cleanup(session: DeviceSession, policy: str, timeout: float) -> None:
    """Clean the session up; a board fault during it fails the test's teardown with the
    fault's one line (what happened to the board), not the plugin's traceback."""
    from pytest_mpsession.errors import BoardFault
    from pytest_mpsession.session.errors import ResourceCleanupError

    try:
        session.cleanup(policy=policy, timeout=timeout)
    except ResourceCleanupError as exc:
        faults = [e for e in exc.errors if isinstance(e, BoardFault)]
        if not faults or len(faults) != len(exc.errors):
            raise
        pytest.fail(
            f"cleanup of the device session: {type(faults[0]).__name__}: {_one_line(faults[0])}",
            pytrace=False,
        )


def _uses_board(item: pytest.Item) -> bool:
    """Whether ``item`` is a device test (a device fixture or a board marker)."""
    if DEVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return any(item.get_closest_marker(m) for m in BOARD_MARKERS)


def _fault_line(exc: BaseException, port: str) -> str:
    """A fault's message in one line, without the port it starts with."""
    text = _one_line(exc)
    return text[len(port) + 2 :] if text.startswith(f"{port}: ") else text


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a device test: after a board fault nothing brought back, try one recovery;
    when that fails the board is broken, and this and every later device test skips at once
    (one dead board must not turn into one timeout per remaining test)."""
    config = item.config
    state = config.stash.get(_STATE, None)
    if state is None or state.board is None or not _uses_board(item):
        return
    board = state.board
    if state.broken is None:
        manager = board.manager
        if manager is None:
            return
        pending = state.fault
        if pending is None and manager.broken is not None:
            pending = ("an earlier test", manager.broken)
        if pending is None:
            return
        state.fault = None
        from pytest_mpsession.errors import MpSessionError

        try:
            manager.recover()
        except MpSessionError:
            test, reason = pending
            state.broken = f"board at {board.port} is broken after {test}: {reason}"
        else:
            return
    state.broken_skips += 1
    pytest.skip(state.broken)


def _note_fault(item: pytest.Item, err: BaseException | None) -> None:
    """Remember that the board failed during ``item`` and did not come back."""
    state = item.config.stash.get(_STATE, None)
    if state is None or state.board is None or state.fault is not None:
        return
    board = state.board
    manager = board.manager
    from pytest_mpsession.errors import BoardFault

    reason: str | None = None
    if isinstance(err, BoardFault) and not err.recovered:
        reason = _fault_line(err, board.port)
    elif manager is not None and manager.broken is not None:
        last = manager.last_error if manager.state == "error" else None
        reason = _fault_line(last, board.port) if last is not None else manager.broken
    if reason is not None:
        state.fault = (item.nodeid, reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    """After a device test (its session cleaned up): note a board that did not come back."""
    try:
        return (yield)
    finally:
        if _uses_board(item):
            _note_fault(item, None)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each test's call report (the session teardown needs it), and show a
    :class:`DeviceError` as the board's traceback at the user's lines, not plugin frames."""
    report = yield
    if call.when == "call":
        item.stash[_CALL_REPORT] = report
    excinfo = call.excinfo
    if excinfo is None or not report.failed:
        return report
    from pytest_mpsession.errors import BoardFault, DeviceError

    err = excinfo.value
    if isinstance(err, BoardFault):
        # what happened to the board is the test's failure; the next test either gets the
        # board back (the communicator recovered it) or a recovery attempt
        _note_fault(item, err)
    elif not isinstance(err, DeviceError):
        return report
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


_PACKAGE_DIR = str(Path(__file__).resolve().parent)


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


def board_traceback(err: Any, tb: Any) -> str:
    """The board's traceback, with the frames of code the test passed as a string literal
    pointing at that literal's lines in the test file."""
    text = str(getattr(err, "traceback", "") or "").replace("\r\n", "\n").rstrip()
    if not text:
        return ""
    origin = _literal_origin(tb)
    if origin is None:
        return text
    path, first_line, source_lines = origin
    out: list[str] = []
    for line in text.split("\n"):
        match = _BOARD_FRAME.match(line)
        if match is None:
            out.append(line)
            continue
        host_line = first_line + int(match.group(2)) - 1
        out.append(f'{match.group(1)}File "{path}", line {host_line}{match.group(3)}')
        if 0 < host_line <= len(source_lines):
            out.append(f"{match.group(1)}  {source_lines[host_line - 1].strip()}")
    return "\n".join(out)


def _literal_origin(tb: Any) -> tuple[str, int, list[str]] | None:
    """(file, line where code line 1 is, file lines) when the failing call in the test's last
    frame passed its board code as a single string literal (optionally ``dedent``-ed)."""
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
    # The innermost call's literal is the code (calls nest: a longer span contains a shorter).
    literals = [
        lit
        for lit in literals
        if isinstance(lit.value, str) and ("\n" in lit.value or lit.lineno == lit.end_lineno)
    ]
    if not literals:
        return None
    lit = min(literals, key=lambda c: (c.end_lineno or 0) - c.lineno)
    try:
        rel = os.path.relpath(path)
    except ValueError:
        rel = str(path)
    return (rel, lit.lineno, source.splitlines())


# -- reports -------------------------------------------------------------------------------------


def _board_facts(board: Board) -> dict[str, str]:
    caps = board.capabilities
    return {
        "description": board.describe(),
        "firmware": caps.firmware_version if caps is not None else "",
        "platform": caps.device_type if caps is not None else "",
        "port": board.port,
        "worker": board.worker or "",
    }


def _record_board(config: pytest.Config, board: Board) -> None:
    """JUnit suite properties for this process's board (and, on an xdist worker, the facts
    the controller needs to report it)."""
    facts = _board_facts(board)
    workeroutput = getattr(config, "workeroutput", None)
    if isinstance(workeroutput, dict):
        workeroutput["mpsession_board"] = facts
    _junit_properties(config, facts, prefix="")


def _junit_properties(config: pytest.Config, facts: dict[str, str], prefix: str) -> None:
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - pytest always has it
        return
    xml = config.stash.get(xml_key, None)
    if xml is None:
        return
    for name, key in (
        ("mpsession_firmware", "firmware"),
        ("mpsession_platform", "platform"),
        ("mpsession_port", "port"),
    ):
        xml.add_global_property(name, prefix + facts[key])


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One line per board: what it is, where, and what it can do."""
    state = config.stash.get(_STATE, None)
    if state is None or not state.settings.configured:
        return ["mpsession: no board (device tests skip; use --mp-port PORT or --mp-mock)"]
    settings = state.settings
    if _is_xdist_controller(config):
        if _shared_port(settings.ports):
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
    if len(settings.ports) > 1 and board.worker is None:
        lines.append(
            f"mpsession: {len(settings.ports)} boards given; without pytest-xdist only the "
            "first is used"
        )
    return lines


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: report each worker's board (JUnit properties, summary line)."""
    config = node.config
    state = config.stash.get(_STATE, None)
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
    state.worker_boards[worker] = facts
    _junit_properties(config, facts, prefix=f"{worker}: ")


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Under pytest-xdist, the boards the workers used (their header lines are not shown);
    and how many device tests were skipped because a board broke."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    for worker, facts in sorted(state.worker_boards.items()):
        terminalreporter.write_line(f"mpsession: {worker}: {facts.get('description', '')}")
    broken = dict(state.worker_broken)
    if state.broken is not None:
        broken[""] = (state.broken, state.broken_skips)
    for worker, (reason, skipped) in sorted(broken.items()):
        who = f"{worker}: " if worker else ""
        tests = "test" if skipped == 1 else "tests"
        terminalreporter.write_line(
            f"mpsession: {who}{skipped} device {tests} skipped: {reason}", red=True, bold=True
        )
