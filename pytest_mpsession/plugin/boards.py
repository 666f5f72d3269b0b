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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mpsession.plugin.options import MOCK_SCHEME, Settings, one_line, probe_syntax_error
from pytest_mpsession.plugin.state import PluginState, get_state

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.session.manager import DeviceSessionManager

__all__ = [
    "NO_BOARD_REASON",
    "Board",
    "Progress",
    "connect_board",
    "disconnect_board",
    "feature_probes",
    "header_will_show",
    "is_xdist_controller",
    "late_probes",
    "new_probes",
    "port_for_worker",
    "prepare_boards",
    "probe_extra",
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
    #: seconds to open the port and enter the raw REPL, and to find the capabilities
    connect_s: float | None = None
    probe_s: float | None = None
    #: why this board cannot be used (an xdist worker reports it per test, not by crashing)
    error: str | None = None
    #: what the xdist controller found on this port moments before (a pool's board): used
    #: like the cache when the board says it is the same one, also where the cache cannot
    #: serve (a board without a unique id)
    known: DeviceCapabilities | None = None

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


class Progress:
    """One line per board on the terminal while it is connected and probed, completed as
    each step ends (``mpsession: PORT: connecting ... raw REPL in 0.03 s, probing ...
    done in 0.41 s``), so a slow or silent board is visible before the first test.

    Silent with ``-q``, on an xdist worker (its output is not shown) and without pytest's
    terminal reporter.
    """

    def __init__(self, config: pytest.Config | None = None) -> None:
        tr = config.pluginmanager.get_plugin("terminalreporter") if config is not None else None
        shown = config is not None and config.get_verbosity() >= 0 and worker_id(config) is None
        self._tr: Any = tr if shown else None
        self._open = False

    def step(self, text: str) -> None:
        """Add ``text`` to the board's line (the line starts with the first step)."""
        if self._tr is not None:
            self._open = True  # first: a Ctrl-C during the write still ends the line
            self._tr.write(text, flush=True)

    def end(self, text: str) -> None:
        """End the board's line with ``text``."""
        if self._tr is not None and self._open:
            self._tr.write_line(text)
            self._open = False


def interrupted() -> KeyboardInterrupt:
    """A Ctrl-C met while waiting for a board, raised afresh (``raise interrupted() from
    None``): the wait's own frames stay out of pytest's report of the interruption. A frame
    interrupted between two instructions may have no line number, and pytest's report of it
    then fails with a TypeError (exit 1, an INTERNALERROR-like traceback, not exit 2)."""
    return KeyboardInterrupt()


def connect_board(config: pytest.Config, board: Board, progress: Progress | None = None) -> None:
    """Open the board, find its capabilities (pytest's cache first), start its manager,
    telling ``progress`` what happens (and how long it took).

    Any failure is a :class:`pytest.UsageError` with one line saying what went wrong.
    """
    progress = progress if progress is not None else Progress()
    try:
        progress.step(f"mpsession: {board.port}: connecting ... ")
        _connect(config, board, progress)
    except KeyboardInterrupt:
        progress.end("failed")
        raise interrupted() from None
    except BaseException:
        progress.end("failed")
        raise
    if board.from_cache:
        progress.end(f"capabilities from cache in {board.probe_s or 0:.2f} s")
    else:
        progress.end(f"done in {board.probe_s or 0:.2f} s")


def _connect(config: pytest.Config, board: Board, progress: Progress) -> None:
    from pytest_mpsession.capabilities import DeviceCapabilities, cache_key, detect, identify
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.errors import MpSessionError
    from pytest_mpsession.session.manager import DeviceSessionManager

    settings = board.settings
    start = time.monotonic()
    try:
        comm = Communicator.open(board.port, baudrate=settings.baudrate, timeout=settings.timeout)
    except (MpSessionError, OSError, ValueError) as exc:
        raise pytest.UsageError(
            f"mpsession: cannot use the board at {board.port}: {one_line(exc)}"
        ) from None
    board.communicator = comm
    board.connect_s = time.monotonic() - start
    progress.step(f"raw REPL in {board.connect_s:.2f} s, probing ... ")
    start = time.monotonic()
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
        if caps is None and board.known is not None and _same_board(board.known, ident):
            caps = DeviceCapabilities.from_dict(board.known.to_dict())
            board.from_cache = True
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
        board.probe_s = time.monotonic() - start
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


def _same_board(known: DeviceCapabilities, ident: Any) -> bool:
    """Whether the identity the board just gave is the one ``known`` describes."""
    return (
        known.implementation == ident.implementation
        and known.firmware_version == ident.firmware_version
        and known.device_type == ident.device_type
        and known.machine == ident.machine
        and (known.unique_id or None) == (ident.unique_id or None)
    )


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
    """xdist controller: as many boards as workers (the settings were resolved by the options
    module's ``pytest_configure``); whether they answer is checked in :func:`prepare_boards`."""
    state = get_state(config)
    if state is None:
        return
    settings = state.settings
    if settings.configured and is_xdist_controller(config):
        workers = int(config.option.numprocesses)
        if workers > len(settings.ports) and not shared_port(settings.ports):
            raise pytest.UsageError(pool_message(workers, settings))


def _check_pool(config: pytest.Config, settings: Settings, progress: Progress | None) -> None:
    """xdist controller: every board a worker will use answers the raw REPL, or a one-line
    usage error before the workers start (they open their boards themselves, and a worker
    whose board fails could only fail its tests one by one)."""
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.errors import MpSessionError

    progress = progress if progress is not None else Progress()
    workers = int(config.option.numprocesses)
    for port in settings.ports[:workers]:
        if port.startswith(MOCK_SCHEME):
            continue  # an emulated board per worker, started by the worker
        start = time.monotonic()
        try:
            progress.step(f"mpsession: {port}: checking ... ")
            Communicator.open(port, baudrate=settings.baudrate, timeout=settings.timeout).close()
        except (MpSessionError, OSError, ValueError) as exc:
            progress.end("failed")
            raise pytest.UsageError(
                f"mpsession: cannot use the board at {port}: {one_line(exc)}"
            ) from None
        except KeyboardInterrupt:
            progress.end("failed")
            raise interrupted() from None
        except BaseException:
            progress.end("failed")
            raise
        progress.end(f"raw REPL in {time.monotonic() - start:.2f} s")


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
    for name, code in probes.items():
        error = probe_syntax_error(name, code)
        if error is not None:
            raise pytest.UsageError(
                f"mpsession: pytest_mpsession_probe_features: {error}; fix it in the "
                "conftest.py or plugin that adds it"
            )
    return probes


def new_probes(config: pytest.Config) -> FeatureProbes | None:
    """Probes that conftest files found during collection (below the initial ones) added
    since the probes were last collected: the whole set becomes this process's probes (so
    the marker checks know them), and the new ones are returned; ``None`` when none are new.
    """
    from pytest_mpsession.capabilities import FeatureProbes

    state = get_state(config)
    assert state is not None, "the settings are resolved at pytest_configure"
    before = feature_probes(config)
    after = _collect_probes(config, state.settings)
    new = [(name, code) for name, code in after.items() if name not in before]
    if not new:
        return None
    state.probes = after
    extra = FeatureProbes(builtin=False)
    for name, code in new:
        extra.add(name, code)
    return extra


def probe_extra(board: Board, extra: FeatureProbes) -> frozenset[str] | None:
    """Run the probes ``extra`` on ``board`` (one exchange) and add the features it has to
    its capabilities; the features found, or ``None`` when the board is not connected."""
    from pytest_mpsession.capabilities import detect

    if board.manager is None or board.capabilities is None:
        return None
    with board.manager.board(board.settings.timeout) as comm:
        found = detect(comm, extra, timeout=board.settings.timeout).features & frozenset(extra)
    for caps in {id(c): c for c in (board.manager.capabilities, board.capabilities)}.values():
        caps.features = caps.features | found
    return found


def late_probes(config: pytest.Config, state: PluginState) -> None:
    """Probes added by conftest files found during collection (below the initial ones):
    known for the marker checks, and run on the board now (one more exchange)."""
    extra = new_probes(config)
    if extra is not None and state.board is not None:
        probe_extra(state.board, extra)


# -- hooks: the board's life --------------------------------------------------------------


def header_will_show(config: pytest.Config) -> bool:
    """Whether pytest's terminal reporter will print the report header (it calls
    ``pytest_report_header``, where the boards are then opened, with progress lines)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None or worker_id(config) is not None:
        return False
    return bool(getattr(tr, "showheader", False)) and not getattr(tr, "no_header", True)


def prepare_boards(config: pytest.Config, progress: Progress | None = None) -> None:
    """Open this process's board (none on the xdist controller, none with --collect-only),
    once: in the report header phase when pytest prints one (so the progress lines and the
    time it takes are part of the run's), else at session start.

    A board that cannot be used is a :class:`pytest.UsageError`; on an xdist worker it is
    kept as the board's error, which its device tests report."""
    state = get_state(config)
    if state is None or state.prepared or not state.settings.configured:
        return
    state.prepared = True
    probes = feature_probes(config)
    from pytest_mpsession.farm.hooks import prepare_pool

    if prepare_pool(config, progress):
        return  # a pool of several boards: the farm identified (or, in one process, opened) it
    if is_xdist_controller(config):
        if not config.option.collectonly:
            _check_pool(config, state.settings, progress)
        return
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
    if given:
        from pytest_mpsession.farm.hooks import pool_board_caps

        board.known = pool_board_caps(config)
    state.board = board
    if config.option.collectonly:
        return
    try:
        connect_board(config, board, progress)
    except pytest.UsageError as exc:
        if worker is None:
            raise
        # A worker that raises here crashes and is restarted under another id; instead its
        # device tests fail with this one line.
        board.error = str(exc)
    if given:
        from pytest_mpsession.farm.hooks import share_board

        try:
            share_board(config, board)  # labgrid places: the pool, from every worker
        except pytest.UsageError as exc:
            board.error = board.error or str(exc)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Open the board now unless pytest's report header will (see :func:`prepare_boards`)."""
    if not header_will_show(session.config):
        prepare_boards(session.config)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """The board is open before collection decides the skips, whatever printed the header."""
    prepare_boards(session.config)


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
