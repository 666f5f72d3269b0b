"""This process's board: choosing its port (the ``--mp-port`` pool under pytest-xdist),
connecting and probing it, the feature probes, and closing it.

A board is opened at session start (so its description can go in the report header, and a
port that cannot be opened stops the run before any test, with exit code 4); under
pytest-xdist each worker opens its own board from the pool and the controller opens none.
Recovery after a board fault is in :mod:`pytest_mpsession.plugin.recovery`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mpsession.plugin.options import MOCK_SCHEME, Settings, one_line
from pytest_mpsession.plugin.state import PluginState, get_state

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.session.manager import DeviceSessionManager

__all__ = [
    "NO_BOARD_REASON",
    "Board",
    "connect_board",
    "disconnect_board",
    "feature_probes",
    "is_xdist_controller",
    "late_probes",
    "port_for_worker",
    "usb_serial_number",
    "worker_id",
]

NO_BOARD_REASON = (
    "no MicroPython board configured: give --mp-port PORT (or MP_PORT, or the mp_port ini key) "
    "to test on a board, or --mp-mock to test on the emulator"
)


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
            f"mpsession: cannot use the board at {board.port}: {one_line(exc)}"
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
            f"{one_line(exc)}"
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


# -- which board: the pool under pytest-xdist ------------------------------------------------


def worker_id(config: pytest.Config) -> str | None:
    # Only pytest-xdist's own workerinput: PYTEST_XDIST_WORKER is inherited by every
    # subprocess a worker starts (a pytest run inside a test would think it is a worker).
    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict) and "workerid" in workerinput:
        return str(workerinput["workerid"])
    return None


def is_xdist_controller(config: pytest.Config) -> bool:
    if getattr(config, "workerinput", None) is not None:
        return False
    return bool(getattr(config.option, "numprocesses", None)) and (
        getattr(config.option, "dist", "no") != "no"
    )


def shared_port(ports: Sequence[str]) -> bool:
    """One emulator URL may serve any number of workers: each opens its own virtual board."""
    return len(ports) == 1 and ports[0].startswith(MOCK_SCHEME)


def port_for_worker(settings: Settings, worker: str | None, count: int | None) -> str:
    ports = settings.ports
    if worker is None or shared_port(ports):
        return ports[0]
    match = re.search(r"(\d+)$", worker)
    index = int(match.group(1)) if match else 0
    if index >= len(ports) or (count is not None and count > len(ports)):
        raise pytest.UsageError(pool_message(count or index + 1, settings))
    return ports[index]


def pool_message(workers: int, settings: Settings) -> str:
    return (
        f"mpsession: {workers} pytest-xdist workers but {len(settings.ports)} board(s) "
        f"({settings.port_source}): each worker needs a board of its own; give one --mp-port per "
        f"worker or run with -n {len(settings.ports)}"
    )


def pytest_configure(config: pytest.Config) -> None:
    """xdist controller: as many boards as workers (the settings were resolved by the
    options module's ``pytest_configure``). That every board works is checked before the
    workers start by :mod:`pytest_mpsession.farm.hooks`, which identifies the whole pool."""
    state = get_state(config)
    if state is None:
        return
    settings = state.settings
    if settings.configured and is_xdist_controller(config):
        workers = int(config.option.numprocesses)
        if workers > len(settings.ports) and not shared_port(settings.ports):
            raise pytest.UsageError(pool_message(workers, settings))


# -- feature probes ----------------------------------------------------------------------


def feature_probes(config: pytest.Config) -> FeatureProbes:
    """The feature probes: built-in, ``mp_features``, then the hook (computed once)."""
    state = get_state(config)
    assert state is not None, "the settings are resolved at pytest_configure"
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


def late_probes(config: pytest.Config, state: PluginState) -> None:
    """Probes added by conftest files found during collection (below the initial ones):
    known for the marker checks, and run on the board now (one more exchange)."""
    from pytest_mpsession.capabilities import FeatureProbes, detect

    before = feature_probes(config)
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


# -- hooks: the board's life --------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Open this process's board (none on the xdist controller, none with --collect-only)."""
    config = session.config
    state = get_state(config)
    if state is None or not state.settings.configured:
        return
    probes = feature_probes(config)
    if is_xdist_controller(config) or state.board is not None:
        return  # the controller opens none; the farm opened a pool of several itself
    worker = worker_id(config)
    workerinput = getattr(config, "workerinput", None)
    count = workerinput.get("workercount") if isinstance(workerinput, dict) else None
    try:
        # the farm gives each worker its board (a worker replacing a crashed one, its board)
        given = workerinput.get("mpsession_port") if isinstance(workerinput, dict) else None
        port = str(given) if given else port_for_worker(state.settings, worker, count)
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


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close the board (an xdist worker tells the controller whether its board broke)."""
    state = get_state(session.config)
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
    state = get_state(config)
    if state is not None and state.board is not None:
        disconnect_board(state.board)
