"""pytest glue of board pools and farms: ``--mp-dist``, routing, the matrix, labgrid places.

How a run with several boards goes:

- **The process that hands tests out knows every board first.** The pytest-xdist
  controller (or the one process of a run without xdist) resolves ``labgrid://`` ports to
  places it reserves and acquires, then identifies every board of the pool in parallel
  (:func:`pytest_mpsession.farm.pool.probe_pool`; pytest's capability cache is shared with
  the workers, so they do not probe again). The controller closes the ports before the
  workers start, and gives each worker its board, and the whole pool, in ``workerinput``.
  With ``labgrid://`` ports the xdist controller takes the places and identifies the pool
  in a thread while pytest-xdist starts the workers; each worker waits for the pool at the
  controller's rendezvous in its ``pytest_configure`` (:func:`_take_places_early`).
- **Routing under xdist** (``--mp-dist load``): each worker keeps in its collection the
  tests its board can run, and those no board of the pool can run (skipped with a reason
  naming every board); :class:`~pytest_mpsession.farm.scheduler.RoutingScheduling` sends
  each test to a worker that has it.
- **The matrix** (``--mp-dist each``): each device test is parametrized over the boards
  (``test_x[esp32@mpmock://esp32]``), through the session-scoped fixture the device
  fixtures depend on; under xdist each worker keeps its own board's copies.
- **Without xdist**, the process opens every board; a device test is bound to a board that
  can run it (the first, in pool order) through the same fixture, with a hidden parameter,
  so its id does not change; tests are grouped by board.
- Every device test's report carries ``mpsession_board`` in its ``user_properties`` (so in
  its JUnit record), and the terminal summary has one line per board.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import dataclasses
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mpsession.farm.requirements import (
    BOARD_INDEX,
    ROUTED,
    Requirements,
    item_requirements,
    none_can_run,
    unmet,
)

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities
    from pytest_mpsession.farm.labgrid import AcquiredPlace, PlaceRequest
    from pytest_mpsession.farm.pool import PoolBoard, Probed
    from pytest_mpsession.plugin.boards import Board, Progress

__all__ = [
    "BOARD_FIXTURE",
    "DIST_MODES",
    "FarmState",
    "get_farm",
    "matrix_boards",
    "pool_board_caps",
    "share_board",
]

HELP_DIST = (
    "how a pool of boards (--mp-port repeated) shares the tests: load (default): each test "
    "runs once, on a board that can run it; each: every device test runs once on every board "
    "(a firmware matrix)."
)
DIST_MODES = ("load", "each")
#: the session-scoped fixture the device fixtures depend on: which board of the pool
BOARD_FIXTURE = "_mpsession_board"
#: the report property naming the board a test ran on
BOARD_PROPERTY = "mpsession_board"
#: the pool index of the board an item runs on, in a process that holds several
_ASSIGNED = pytest.StashKey[int]()


@dataclass
class _Saved:
    fault: tuple[str, str] | None = None
    broken: str | None = None
    broken_skips: int = 0


@dataclass
class FarmState:
    """What the farm knows in this process."""

    dist: str = "load"
    #: every board of the pool, once known (None: no pool, nothing to route)
    pool: list[PoolBoard] | None = None
    #: an xdist worker: its board's index in ``pool``; and whether its collection is routed
    mine: int | None = None
    routed: bool = False
    #: the controller: the pool's ports, and each one's probe (under way since configure)
    probing: list[tuple[str, concurrent.futures.Future[Probed]]] | None = None
    #: the controller: which worker holds which board
    node_board: dict[str, int] = field(default_factory=dict)
    #: one process, several boards: the connected boards by pool index, and which is current
    boards: dict[int, Board] = field(default_factory=dict)
    current: int = 0
    saved: dict[int, _Saved] = field(default_factory=dict)
    #: labgrid places this process holds (released at the end)
    places: list[AcquiredPlace] = field(default_factory=list)
    #: seconds it took to reserve and acquire them (the report header says)
    places_s: float | None = None
    #: the SIGTERM handler installed while places are held
    sigterm: Any = None
    #: the controller's session (the scheduler tells it how many tests the run has)
    session: pytest.Session | None = None
    #: per board label: each test's outcome (the per-board summary)
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the controller: where its workers exchange their boards' answers to late probes;
    #: a worker: how to reach it
    rendezvous: Any = None
    meet: dict[str, Any] | None = None
    #: how many plugins were registered when the probes were last collected
    plugins_seen: int = -1
    #: the xdist controller with labgrid places: the places are taken and the pool
    #: identified while the workers start (a worker waits for its board at the rendezvous)
    early: bool = False
    pending: concurrent.futures.Future[_Taken] | None = None
    pool_size: int = 0
    #: a worker of such a run: the rendezvous where it gives its board's capabilities
    #: (until it did), and the pool's ports
    gather: dict[str, Any] | None = None
    gather_ports: list[str] = field(default_factory=list)
    #: and the places by their boards' links (``esp32 (labgrid://esp32)``), for errors
    gather_places: dict[str, str] = field(default_factory=dict)


@dataclass
class _Taken:
    """What the controller took while its workers started: places and their ports."""

    places: list[AcquiredPlace]
    seconds: float
    ports: list[str]


_FARM = pytest.StashKey[FarmState]()


def get_farm(config: pytest.Config) -> FarmState | None:
    """The farm's state in this process (``None`` before ``pytest_configure``)."""
    return config.stash.get(_FARM, None)


def _is_routed(item: pytest.Item) -> bool:
    return item.stash.get(ROUTED, False)


# -- options ---------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--mp-dist`` and ``mp_dist``."""
    from pytest_mpsession.plugin.options import option_group

    group = option_group(parser)
    group.addoption(
        "--mp-dist", dest="mp_dist", metavar="{load,each}", default=None, help=HELP_DIST
    )
    parser.addini("mp_dist", HELP_DIST, default="")


def _dist_mode(config: pytest.Config) -> str:
    cli = config.getoption("mp_dist", None)
    if cli is not None:
        raw, source = str(cli), "--mp-dist"
    else:
        raw = str(config.getini("mp_dist") or "")
        if not raw.strip():
            return "load"
        where = config.inipath.name if config.inipath is not None else "the ini file"
        source = f"mp_dist in {where}"
    if raw.strip() not in DIST_MODES:
        raise pytest.UsageError(
            f"mpsession: {source} {raw!r} is not a way to share tests among boards: use load "
            "(each test once, on a board that can run it) or each (every test on every board)"
        )
    return raw.strip()


# -- set-up ----------------------------------------------------------------------------------


def _xdist_dist(config: pytest.Config) -> str:
    return str(getattr(config.option, "dist", "no") or "no")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """The dist mode; labgrid places; on the controller, the pool's probe starts."""
    from pytest_mpsession.plugin.boards import is_xdist_controller, shared_port
    from pytest_mpsession.plugin.state import get_state

    if config.getoption("help", False) or config.getoption("version", False):
        return
    farm = FarmState(dist=_dist_mode(config))
    config.stash[_FARM] = farm
    if getattr(config, "workerinput", None) is None:
        config.pluginmanager.register(BoardSummary(farm), "mpsession-farm-summary")
    state = get_state(config)
    if state is None or not state.settings.configured:
        return
    workerinput = getattr(config, "workerinput", None)
    if isinstance(workerinput, dict):
        _configure_worker(config, farm, workerinput)
        return
    controller = is_xdist_controller(config)
    if config.option.collectonly:
        if farm.dist == "each":
            _identify_for_listing(config, farm, controller)
        return
    if farm.dist == "each" and controller and _xdist_dist(config) != "load":
        raise pytest.UsageError(
            f"mpsession: --mp-dist each runs through pytest-xdist's load distribution, not "
            f"--dist {_xdist_dist(config)}: leave --dist out"
        )
    if controller and _labgrid_ports(state.settings.ports):
        _take_places_early(config, farm)
        return
    _take_places(config, farm)
    settings = state.settings
    ports = list(settings.ports)
    if shared_port(ports):
        return
    if controller:
        ports = ports[: int(config.option.numprocesses)]
    elif len(ports) < 2:
        return
    probes = _feature_probes(config)
    cache = getattr(config, "cache", None) if settings.use_cache else None
    if controller:
        # under way while pytest starts its session; the header (or session start) waits
        from pytest_mpsession.farm.pool import start_probes

        futures = start_probes(
            ports, probes, cache, baudrate=settings.baudrate, timeout=settings.timeout
        )
        farm.probing = list(zip(ports, futures, strict=True))


def _identify_for_listing(config: pytest.Config, farm: FarmState, controller: bool) -> None:
    """``--collect-only`` under ``--mp-dist each``: the copies of each device test carry their
    board's label (``esp32@mpmock://esp32``), which needs who each board is. The boards a run
    would use are identified as a run's controller does it (open, one identity exchange,
    pytest's cache, close), so the listing shows the copies a run would run. labgrid places
    are not taken for a listing: with a ``labgrid://`` port the tests are listed once."""
    from pytest_mpsession.plugin.boards import shared_port
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    assert state is not None
    settings = state.settings
    ports = list(settings.ports)
    if shared_port(ports) or _labgrid_ports(ports):
        return
    if controller:  # pytest-xdist is off for a listing; a run would use the first N boards
        ports = ports[: int(config.option.numprocesses)]
    if len(ports) < 2:
        return
    from pytest_mpsession.farm.pool import start_probes

    cache = getattr(config, "cache", None) if settings.use_cache else None
    futures = start_probes(
        ports,
        _feature_probes(config),
        cache,
        baudrate=settings.baudrate,
        timeout=settings.timeout,
    )
    farm.probing = list(zip(ports, futures, strict=True))


def _feature_probes(config: pytest.Config) -> Any:
    from pytest_mpsession.plugin.boards import feature_probes

    return feature_probes(config)


def _configure_worker(config: pytest.Config, farm: FarmState, workerinput: dict[str, Any]) -> None:
    """An xdist worker: the pool, its own board, the places, as the controller decided."""
    from pytest_mpsession.farm.pool import PoolBoard

    early = workerinput.get("mpsession_early")
    if isinstance(early, dict):
        _fetch_places(farm, workerinput, early)

    farm.dist = str(workerinput.get("mpsession_dist", farm.dist))
    pool = workerinput.get("mpsession_pool")
    if isinstance(pool, list):
        farm.pool = [PoolBoard.from_dict(b) for b in pool]
        farm.mine = int(workerinput.get("mpsession_board", 0))
        farm.routed = bool(workerinput.get("mpsession_routed", False))
        meet = workerinput.get("mpsession_meet")
        farm.meet = meet if isinstance(meet, dict) else None
    elif farm.gather is not None:
        farm.routed = bool(workerinput.get("mpsession_routed", False))
    places = workerinput.get("mpsession_places")
    if isinstance(places, list):
        from pytest_mpsession.farm.labgrid import AcquiredPlace

        _use_places([AcquiredPlace.from_dict(p) for p in places])


def _fetch(early: dict[str, Any], kind: str) -> dict[str, Any]:
    from pytest_mpsession.farm.rendezvous import RendezvousError, fetch_pool

    try:
        got = fetch_pool(early, kind)
    except RendezvousError as exc:
        got = {"error": str(exc)}
    if "error" in got:
        raise pytest.UsageError(f"mpsession: {got['error']}")
    return got


def _fetch_places(farm: FarmState, workerinput: dict[str, Any], early: dict[str, Any]) -> None:
    """A worker started while the controller took the labgrid places: wait for their
    ports at the rendezvous. The worker opens its board as any worker does, then gives
    what it found there and learns the pool (:func:`share_board`)."""
    got = _fetch(early, "places")
    ports = [str(p) for p in got["ports"]]
    index = int(workerinput.get("mpsession_board", 0))
    workerinput["mpsession_port"] = ports[index]
    workerinput["mpsession_dist"] = got["dist"]
    workerinput["mpsession_routed"] = got["routed"]
    workerinput["mpsession_places"] = got["places"]
    farm.mine = index
    farm.gather, farm.gather_ports = early, ports
    farm.gather_places = {str(p["serial_url"]): f"{p['place']} ({p['url']})" for p in got["places"]}


def pool_board_caps(config: pytest.Config) -> DeviceCapabilities | None:
    """An xdist worker of a pool: what the controller found on its board (just before the
    worker started), else ``None``."""
    farm = get_farm(config)
    if farm is None or farm.pool is None or farm.mine is None:
        return None
    return next((b.caps for b in farm.pool if b.index == farm.mine), None)


def _labgrid_ports(ports: tuple[str, ...] | list[str]) -> list[tuple[int, str]]:
    return [(i, p) for i, p in enumerate(ports) if p.lower().startswith("labgrid://")]


def _place_requests(config: pytest.Config) -> tuple[list[int], list[PlaceRequest]]:
    """The ``labgrid://`` ports' indices and requests, labgrid's client imported (usage
    errors for a bad URL or labgrid missing)."""
    from pytest_mpsession.farm.labgrid import import_labgrid, parse_url
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    assert state is not None
    wanted = _labgrid_ports(state.settings.ports)
    try:
        requests = [parse_url(p) for _, p in wanted]
    except ValueError as exc:
        raise pytest.UsageError(f"mpsession: {exc} ({state.settings.port_source})") from None
    try:
        import_labgrid()
    except ImportError:
        raise pytest.UsageError(
            "mpsession: labgrid:// ports need labgrid: pip install 'pytest-mpsession[labgrid]'"
        ) from None
    return [i for i, _ in wanted], requests


def _take_places(config: pytest.Config, farm: FarmState) -> None:
    """``labgrid://`` ports -> places reserved and acquired now, their links in the pool."""
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    assert state is not None
    ports = list(state.settings.ports)
    # a run without labgrid:// ports does not import the labgrid module (nor asyncio)
    if not _labgrid_ports(ports):
        return
    from pytest_mpsession.farm.labgrid import LabgridError, acquire_places

    wanted, requests = _place_requests(config)
    start = time.monotonic()
    try:
        places = acquire_places(requests, timeout=state.settings.timeout)
    except LabgridError as exc:
        raise pytest.UsageError(f"mpsession: {exc}") from None
    farm.places = places
    farm.places_s = time.monotonic() - start
    _release_at_exit(places)
    _terminate_as_interrupt(farm)
    for i, place in zip(wanted, places, strict=True):
        ports[i] = place.serial_url
    state.settings = dataclasses.replace(state.settings, ports=tuple(ports))
    _use_places(places)


def _take_places_early(config: pytest.Config, farm: FarmState) -> None:
    """The xdist controller with ``labgrid://`` ports: reserve and acquire the places, and
    identify the pool's boards, in a thread, while pytest-xdist starts the workers (the
    exporter starting ser2net, and pyserial's RFC 2217 negotiation, are mostly waiting).
    Each worker is given its board's index and the rendezvous, where it waits for the pool
    in its ``pytest_configure``; the controller waits for it before tests are handed out
    (:func:`_join_early`: a usage error there, exit status 4, when it failed)."""
    from pytest_mpsession.farm.labgrid import acquire_places
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    assert state is not None
    settings = state.settings
    # imported here, not in the thread: it is CPU work, as is starting the workers (and
    # importing past pytest's assertion rewriting changes sys.meta_path for a moment)
    wanted, requests = _place_requests(config)
    _terminate_as_interrupt(farm)
    workers = int(config.option.numprocesses)
    size = min(workers, len(settings.ports))
    rendezvous = _new_rendezvous(size, settings.timeout)
    dist = farm.dist
    routed = size > 1 and _xdist_dist(config) == "load"

    def take() -> _Taken:
        try:
            start = time.monotonic()
            places = acquire_places(requests, timeout=settings.timeout)
            seconds = time.monotonic() - start
            farm.places = places  # released at the end (or at exit) from here on
            _release_at_exit(places)
            ports = list(settings.ports)
            for i, place in zip(wanted, places, strict=True):
                ports[i] = place.serial_url
        except Exception as exc:
            rendezvous.offer("places", {"error": str(exc)})
            raise
        # each worker opens its own board and gives what it found at the rendezvous
        # (gather "boards"): the controller never opens them, pyserial's RFC 2217 open and
        # close of each (0.4 and 0.3 s of its fixed pauses) stay off the way to the tests
        rendezvous.offer(
            "places",
            {
                "ports": ports[:size],
                "places": [p.to_dict() for p in places],
                "dist": dist,
                "routed": routed,
            },
        )
        return _Taken(places, seconds, ports)

    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mpsession-places")
    farm.pending = executor.submit(take)
    executor.shutdown(wait=False)
    farm.early = True
    farm.pool_size = size
    farm.rendezvous = rendezvous


def _join_early(config: pytest.Config, farm: FarmState) -> None:
    """The controller: wait for the places and the pool taken while the workers started;
    a failure is a usage error (exit status 4) before any test is handed out."""
    from pytest_mpsession.farm.labgrid import LabgridError
    from pytest_mpsession.farm.pool import PoolError
    from pytest_mpsession.plugin.state import get_state

    pending = farm.pending
    if pending is None:
        return
    try:
        taken = pending.result()
    except (LabgridError, PoolError) as exc:
        farm.pending = None
        pytest.exit(f"mpsession: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    farm.pending = None
    state = get_state(config)
    assert state is not None
    state.settings = dataclasses.replace(state.settings, ports=tuple(taken.ports))
    farm.places_s = taken.seconds
    _use_places(taken.places)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(_places_line(taken.places, taken.seconds))
    got = farm.rendezvous.wait("boards")
    if "error" in got:
        pytest.exit(f"mpsession: {got['error']}", returncode=pytest.ExitCode.USAGE_ERROR)
    farm.pool = _gathered_pool(taken.ports[: farm.pool_size], got)


def _gathered_pool(ports: list[str], got: dict[str, Any]) -> list[PoolBoard]:
    """The pool of the boards the workers identified (see :func:`share_board`)."""
    from pytest_mpsession.capabilities import DeviceCapabilities
    from pytest_mpsession.farm.pool import make_pool

    caps = [DeviceCapabilities.from_dict(a["caps"]) for a in got["answers"]]
    return make_pool(ports, caps)


def share_board(config: pytest.Config, board: Board) -> None:
    """An xdist worker of a run whose boards are labgrid places, its board opened (or
    failed): give what it found at the rendezvous and learn the whole pool (a usage error
    when a board of the pool could not be used)."""
    farm = get_farm(config)
    if farm is None or farm.gather is None or farm.mine is None or farm.pool is not None:
        return
    from pytest_mpsession.farm.rendezvous import RendezvousError, gather

    meet, ports = farm.gather, farm.gather_ports
    farm.gather = None
    caps = board.capabilities
    if caps is not None and board.error is None:
        part: dict[str, Any] = {"caps": caps.to_dict()}
    else:
        why = board.error or f"the board at {board.port} could not be identified"
        why = why.removeprefix("mpsession: ")
        place = farm.gather_places.get(board.port)
        part = {"error": f"labgrid place {place}: {why}" if place else why}
    try:
        got = gather(meet, "boards", farm.mine, part)
    except RendezvousError as exc:
        got = {"error": str(exc)}
    if "error" in got:
        raise pytest.UsageError(f"mpsession: {got['error']}")
    farm.pool = _gathered_pool(ports, got)
    if len(farm.pool) > 1:
        farm.meet = meet


def _places_line(places: list[AcquiredPlace], seconds: float) -> str:
    """The report's line on the labgrid places this run holds."""
    held = ", ".join(f"{p.place} ({p.request.url})" for p in places)
    return f"mpsession: labgrid places {held} acquired in {seconds:.2f} s"


def _use_places(places: list[AcquiredPlace]) -> None:
    """The places' power switches become their boards' hard reset."""
    from pytest_mpsession.farm.labgrid import PlacePower
    from pytest_mpsession.transport import set_reset_driver

    for place in places:
        if place.power is not None:
            set_reset_driver(place.serial_url, PlacePower(place.power, place=place.place).cycle)


_AT_EXIT: list[list[AcquiredPlace]] = []


def _terminate_as_interrupt(farm: FarmState) -> None:
    """While places are held, SIGTERM (a CI job cancelled) ends the run as Ctrl-C does, so
    pytest finishes and the places are released; the handler goes at release."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return  # someone else's handler: theirs to decide

    def terminated(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt("terminated (SIGTERM)")

    signal.signal(signal.SIGTERM, terminated)
    farm.sigterm = terminated


def _release_at_exit(places: list[AcquiredPlace]) -> None:
    """Release the places when the process ends without ``pytest_unconfigure`` (it did
    not get there); :func:`_release` empties the list when it ran."""
    if not _AT_EXIT:
        atexit.register(_release_left)
    _AT_EXIT.append(places)


def _release_left() -> None:
    from pytest_mpsession.farm.labgrid import release_places

    while _AT_EXIT:
        places = _AT_EXIT.pop()
        if places:
            release_places(places)


def _release(config: pytest.Config, farm: FarmState) -> None:
    pending, farm.pending = farm.pending, None
    if pending is not None:  # still taking the places (Ctrl-C early): they are held after
        concurrent.futures.wait([pending])
    if farm.rendezvous is not None:
        farm.rendezvous.close()
        farm.rendezvous = None
    if farm.sigterm is not None:
        import signal

        if signal.getsignal(signal.SIGTERM) is farm.sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        farm.sigterm = None
    held, farm.places = farm.places, []
    places = list(held)
    held.clear()  # the same list the exit handler holds: released here, not again there
    if not places:
        return
    from pytest_mpsession.farm.labgrid import release_places
    from pytest_mpsession.transport import set_reset_driver

    for place in places:
        set_reset_driver(place.serial_url, None)
    problems = release_places(places)
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    for problem in problems:
        if terminal is not None:
            terminal.write_line(f"mpsession: {problem}", red=True)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """The controller's session (the scheduler tells it how many tests the run has)."""
    farm = get_farm(session.config)
    if farm is not None:
        farm.session = session


def prepare_pool(config: pytest.Config, progress: Progress | None) -> bool:
    """Called by the boards module where it prepares this process's board (in the report
    header, with a progress line per board, or at session start): True when this process
    has a pool of several boards, which the farm handles.

    The xdist controller waits for every board's identification (a usage error for the
    first, in pool order, that failed: before any worker starts); one process with several
    ports opens them all, in parallel."""
    farm = get_farm(config)
    if farm is None:
        return False
    if farm.early:
        return True  # the pool is identified while the workers start (_take_places_early)
    if farm.probing is not None:
        _finish_probes(farm, progress)
        return True
    return _open_pool(config, farm, progress)


def _finish_probes(farm: FarmState, progress: Progress | None) -> None:
    from pytest_mpsession.farm.pool import PoolError, make_pool
    from pytest_mpsession.plugin.boards import interrupted

    assert farm.probing is not None
    probing, farm.probing = farm.probing, None
    caps = []
    for port, future in probing:
        _step(progress, f"mpsession: {port}: checking ... ")
        try:
            probed = future.result()
        except PoolError as exc:
            _end(progress, "failed")
            raise pytest.UsageError(f"mpsession: {exc}") from None
        except KeyboardInterrupt:
            _end(progress, "failed")
            raise interrupted() from None
        except BaseException:
            _end(progress, "failed")
            raise
        _end(progress, f"raw REPL in {probed.seconds:.2f} s")
        caps.append(probed.caps)
    farm.pool = make_pool([port for port, _ in probing], caps)


def _step(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress.step(text)


def _end(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress.end(text)


def _open_pool(config: pytest.Config, farm: FarmState, progress: Progress | None) -> bool:
    """One process, several ports: connect them all in parallel (the first is the
    process's board until a test needs another). False when this is not such a process."""
    from pytest_mpsession.farm.pool import PoolBoard, board_labels
    from pytest_mpsession.plugin.boards import (
        Board,
        connect_board,
        disconnect_board,
        is_xdist_controller,
    )
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    if (
        state is None
        or not state.settings.configured
        or len(state.settings.ports) < 2
        or getattr(config, "workerinput", None) is not None
        or is_xdist_controller(config)
    ):
        return False
    probes = _feature_probes(config)
    ports = list(state.settings.ports)
    boards = [Board(port=p, settings=state.settings, probes=probes) for p in ports]
    if config.option.collectonly:
        state.board = boards[0]
        return True

    def connect(board: Board) -> float:
        start = time.monotonic()
        connect_board(config, board)
        return time.monotonic() - start

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(boards)) as ex:
        futures = [ex.submit(connect, b) for b in boards]
        failure: BaseException | None = None
        for board, fut in zip(boards, futures, strict=True):
            _step(progress, f"mpsession: {board.port}: connecting ... ")
            exc = fut.exception()
            _end(progress, "failed" if exc is not None else f"ready in {fut.result():.2f} s")
            if exc is not None and failure is None:
                failure = exc
    if failure is not None:
        for b in boards:
            disconnect_board(b)
        raise failure
    caps = [b.capabilities for b in boards]
    assert all(c is not None for c in caps)
    labels = board_labels(ports, [c.device_type for c in caps if c is not None])
    farm.pool = [
        PoolBoard(index=i, port=b.port, label=labels[i], caps=b.capabilities)
        for i, b in enumerate(boards)
        if b.capabilities is not None
    ]
    farm.boards = dict(enumerate(boards))
    farm.current = 0
    state.board = boards[0]
    return True


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller: give the worker a board of its own (a replacement worker gets the board
    of the one it replaces), the pool, and the places."""
    config = node.config
    farm = get_farm(config)
    if farm is None:
        return
    wid = str(node.gateway.id)
    if farm.pending is not None:
        # the places are still being taken, or the pool identified by the workers: the
        # worker waits for its port at the rendezvous (never joined here: the pool needs
        # every worker)
        taken = set(farm.node_board.values())
        free = [i for i in range(farm.pool_size) if i not in taken]
        if not free:
            return
        farm.node_board[wid] = free[0]
        node.workerinput["mpsession_board"] = free[0]
        node.workerinput["mpsession_early"] = farm.rendezvous.to_dict()
        return
    if farm.pool is not None:
        taken = set(farm.node_board.values())
        free = [b.index for b in farm.pool if b.index not in taken]
        if not free:
            return  # more workers than boards: the boards module says so to the worker
        index = free[0]
        farm.node_board[wid] = index
        node.workerinput["mpsession_pool"] = [b.to_dict() for b in farm.pool]
        node.workerinput["mpsession_board"] = index
        node.workerinput["mpsession_port"] = farm.pool[index].port
        node.workerinput["mpsession_dist"] = farm.dist
        node.workerinput["mpsession_routed"] = _routes(config, farm)
        if len(farm.pool) > 1:
            node.workerinput["mpsession_meet"] = _rendezvous(config, farm).to_dict()
    if farm.places:
        node.workerinput["mpsession_places"] = [p.to_dict() for p in farm.places]


def _rendezvous(config: pytest.Config, farm: FarmState) -> Any:
    """The controller's :class:`~pytest_mpsession.farm.rendezvous.Rendezvous` (made once):
    a worker decides its collection (and skip reasons naming every board) with every
    board's answer to late probes."""
    assert farm.pool is not None
    if farm.rendezvous is None:
        from pytest_mpsession.plugin.state import get_state

        state = get_state(config)
        timeout = state.settings.timeout if state is not None else 10.0
        farm.rendezvous = _new_rendezvous(len(farm.pool), timeout)
    return farm.rendezvous


def _new_rendezvous(boards: int, timeout: float) -> Any:
    """A rendezvous for ``boards`` workers; the workers start one after the other, so each
    waits long enough for the slowest to catch up."""
    from pytest_mpsession.farm.rendezvous import Rendezvous

    return Rendezvous(boards, timeout=max(60.0, 3 * timeout))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Controller: a worker crashed; its board is free for the worker that replaces it (a
    worker that finished keeps its board: none replaces it, and the board's tests are done)."""
    farm = get_farm(node.config)
    if farm is not None and error is not None:
        farm.node_board.pop(str(node.gateway.id), None)


def _routes(config: pytest.Config, farm: FarmState) -> bool:
    """Whether the controller routes (its scheduler), given the pool and xdist's --dist."""
    return farm.pool is not None and len(farm.pool) > 1 and _xdist_dist(config) == "load"


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The routing scheduler, for a pool of several boards under ``--dist load`` (labgrid
    places taken while the workers started are waited for here)."""
    farm = get_farm(config)
    if farm is not None:
        _join_early(config, farm)
    if farm is None or not _routes(config, farm):
        return None
    from pytest_mpsession.farm.scheduler import RoutingScheduling

    session = farm.session

    def count(tests: int) -> None:
        # the terminal's progress counts the run's tests, not one worker's share
        if session is not None:
            session.testscollected = tests

    return RoutingScheduling(config, log, on_collection=count)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """One process holding a pool: the JUnit properties of every board (the reports module
    records the current one)."""
    from pytest_mpsession.plugin.reports import record_board
    from pytest_mpsession.plugin.state import get_state

    farm = get_farm(session.config)
    state = get_state(session.config)
    if farm is None or state is None or not farm.boards:
        return
    for board in farm.boards.values():
        if board is not state.board and board.capabilities is not None:
            record_board(session.config, board)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the other boards of the pool; release the labgrid places."""
    farm = get_farm(config)
    if farm is None:
        return
    if farm.boards:
        from pytest_mpsession.plugin.boards import disconnect_board

        for board in farm.boards.values():
            disconnect_board(board)
    _release(config, farm)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """One process holding a pool: the other boards, and how tests are shared."""
    from pytest_mpsession.plugin.boards import Progress, prepare_boards

    prepare_boards(config, Progress(config))  # the pool is opened here (once), if not yet
    farm = get_farm(config)
    if farm is None:
        return None
    lines = []
    if farm.places and farm.places_s is not None:
        lines.append(_places_line(farm.places, farm.places_s))
    if farm.pool is None or len(farm.pool) < 2:
        return lines or None
    if not farm.boards:  # the xdist controller
        labels = ", ".join(b.label for b in farm.pool)
        if farm.dist == "each":
            lines.append(f"mpsession: --mp-dist each: every device test runs on each of {labels}")
        elif _routes(config, farm):
            lines.append(
                f"mpsession: --mp-dist load: each test goes to a board that can run it: {labels}"
            )
        return lines or None
    lines += [f"mpsession: {b.describe()}" for i, b in sorted(farm.boards.items()) if i]
    if farm.dist == "each":
        lines.append(
            f"mpsession: --mp-dist each: every device test runs on each of these "
            f"{len(farm.pool)} boards"
        )
    else:
        lines.append(
            f"mpsession: --mp-dist load: each device test runs on the first of these "
            f"{len(farm.pool)} boards that can run it"
        )
    return lines


# -- which board runs a test -------------------------------------------------------------------


def _requirements(item: pytest.Item) -> Requirements | None:
    """The item's requirements, or None when its markers are malformed (the markers module
    reports that as a usage error)."""
    try:
        reqs = item_requirements(item)
        for spec in reqs.firmware:
            from pytest_mpsession.capabilities import FirmwareSpec

            FirmwareSpec(spec)
    except (ValueError, TypeError):
        return None
    return reqs


def _eligible(pool: list[PoolBoard], reqs: Requirements) -> list[int]:
    return [b.index for b in pool if unmet(reqs, b.caps) is None]


def _is_device_test(item: pytest.Item) -> bool:
    from pytest_mpsession.plugin.markers import uses_board

    return uses_board(item)


def _late_pool_probes(config: pytest.Config, farm: FarmState) -> None:
    """Probes a conftest file found during collection added (unknown when the pool was
    identified): every board of the pool is asked, and the pool's capabilities updated,
    before a test is bound to a board or a worker's collection decided.

    In one process holding the pool, each board is asked (in parallel); an xdist worker
    asks its own board and learns the others' answers through the controller's
    :class:`~pytest_mpsession.farm.rendezvous.Rendezvous`."""
    plugins = len(config.pluginmanager.get_plugins())
    if plugins == farm.plugins_seen or farm.pool is None or len(farm.pool) < 2:
        return
    farm.plugins_seen = plugins  # a new conftest is a new plugin: only then look again
    from pytest_mpsession.plugin.boards import new_probes, probe_extra
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    if state is None or not state.settings.configured:
        return
    extra = new_probes(config)
    if extra is None:
        return
    names = frozenset(extra)

    def ask(board: Board | None) -> frozenset[str] | None:
        # a board that fails here shows its fault in its own tests; its answer is unknown
        # (every worker must still take part in the exchange, or the others wait for it)
        from pytest_mpsession.errors import MpSessionError

        try:
            return probe_extra(board, extra) if board is not None else None
        except (MpSessionError, OSError, ValueError):
            return None

    answers: dict[int, frozenset[str] | None]
    if farm.boards:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(farm.boards)) as ex:
            results = list(ex.map(ask, farm.boards.values()))
        answers = dict(zip(farm.boards, results, strict=True))
    elif farm.mine is not None:
        mine = ask(state.board)
        answers = {farm.mine: mine}
        if farm.meet is not None:
            from pytest_mpsession.farm.rendezvous import RendezvousError, exchange

            try:
                got = exchange(
                    farm.meet, extra.digest(), farm.mine, None if mine is None else sorted(mine)
                )
            except RendezvousError as exc:
                raise pytest.UsageError(
                    f"mpsession: the probes {', '.join(sorted(names))} (added while "
                    f"collecting) could not be compared across the pool: {exc}"
                ) from None
            answers.update({i: frozenset(f) for i, f in got.items() if f is not None})
    else:
        return
    for board in farm.pool:
        found = answers.get(board.index)
        if found is not None:
            board.caps.features = (board.caps.features - names) | (frozenset(found) & names)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Bind each device test to its board(s): every board (``each``), or, in one process
    holding several boards, the first that can run it (a hidden parameter)."""
    config = metafunc.config
    farm = get_farm(config)
    if farm is None or farm.pool is None or BOARD_FIXTURE not in metafunc.fixturenames:
        return
    if len(farm.pool) < 2:
        return
    _late_pool_probes(config, farm)
    if farm.dist == "each":
        metafunc.parametrize(
            BOARD_FIXTURE,
            [b.index for b in farm.pool],
            ids=[b.label for b in farm.pool],
            indirect=True,
            scope="session",
        )
        return
    if not farm.boards:
        return  # an xdist worker: one board, routing is the scheduler's
    reqs = _requirements(metafunc.definition)
    eligible = _eligible(farm.pool, reqs) if reqs is not None else []
    hidden = getattr(pytest, "HIDDEN_PARAM", None)
    index = eligible[0] if eligible else 0
    ids = [hidden] if hidden is not None else [farm.pool[index].label]
    metafunc.parametrize(BOARD_FIXTURE, [index], ids=ids, indirect=True, scope="session")


@pytest.fixture(scope="session")
def _mpsession_board(request: pytest.FixtureRequest) -> Board | None:
    """The pool board of the test (which the device fixtures use): the matrix's parameter,
    or the board that can run it in a process holding several; else this process's board."""
    from pytest_mpsession.plugin.state import get_state

    index = getattr(request, "param", None)
    farm = get_farm(request.config)
    if index is not None and farm is not None and farm.boards:
        _switch(request.config, farm, int(index))
    state = get_state(request.config)
    return state.board if state is not None else None


def _switch(config: pytest.Config, farm: FarmState, index: int) -> None:
    """Make board ``index`` this process's board (each board keeps its own fault state)."""
    from pytest_mpsession.plugin.state import get_state

    state = get_state(config)
    if state is None or index == farm.current or index not in farm.boards:
        return
    farm.saved[farm.current] = _Saved(state.fault, state.broken, state.broken_skips)
    saved = farm.saved.get(index, _Saved())
    state.fault, state.broken, state.broken_skips = saved.fault, saved.broken, saved.broken_skips
    state.board = farm.boards[index]
    farm.current = index


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Decide each device test's board: its skip (none can run it), and, on a routed xdist
    worker, whether it belongs to this worker's collection at all."""
    farm = get_farm(config)
    if farm is None or farm.pool is None or len(farm.pool) < 2:
        return
    _late_pool_probes(config, farm)
    pool = farm.pool
    keep: list[pytest.Item] = []
    for item in items:
        if not _is_device_test(item):
            keep.append(item)
            continue
        reqs = _requirements(item)
        if reqs is None:
            keep.append(item)  # malformed markers: the markers module stops the run
            continue
        item.stash[ROUTED] = True
        index = _param_index(item)
        if farm.dist == "each" and index is not None:
            if farm.mine is not None and farm.routed and index != farm.mine:
                continue
            item.stash[_ASSIGNED] = index
            reason = unmet(reqs, pool[index].caps)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
            keep.append(item)
            continue
        eligible = _eligible(pool, reqs)
        if not eligible:
            boards = [(b.label, b.caps) for b in pool]
            item.add_marker(pytest.mark.skip(reason=none_can_run(reqs, boards)))
            item.stash[_ASSIGNED] = -1  # no board's: not in any board's count
            keep.append(item)
            continue
        if farm.mine is not None:
            if farm.routed and farm.mine not in eligible:
                continue
            if not farm.routed and farm.mine not in eligible:
                reason = unmet(reqs, pool[farm.mine].caps)
                item.add_marker(pytest.mark.skip(reason=reason or "not this board"))
            keep.append(item)
            continue
        item.stash[_ASSIGNED] = index if index is not None else eligible[0]
        keep.append(item)
    items[:] = keep


def matrix_boards(config: pytest.Config) -> list[tuple[int, str]]:
    """Under ``--mp-dist each`` with a pool: ``(index, label)`` of every board, for a
    collector whose items are not parametrized functions to make one item per board (named
    ``NAME[label]``, with ``item.stash[BOARD_INDEX] = index``); else ``[]``."""
    farm = get_farm(config)
    if farm is None or farm.dist != "each" or farm.pool is None or len(farm.pool) < 2:
        return []
    return [(b.index, b.label) for b in farm.pool]


def _param_index(item: pytest.Item) -> int | None:
    given = item.stash.get(BOARD_INDEX, None)
    if given is not None:
        return given
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    value = callspec.params.get(BOARD_FIXTURE)
    return int(value) if isinstance(value, int) else None


# -- running: the board of each test, per-board outcomes --------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A process holding several boards switches to the test's board (before recovery and
    the fixtures look at it); every device test names its board in its report."""
    farm = get_farm(item.config)
    if farm is None or farm.pool is None or len(farm.pool) < 2:
        return
    index = item.stash.get(_ASSIGNED, None)
    if index is None and _is_routed(item):
        index = farm.mine
    if index is None or index < 0:
        return
    if farm.boards:
        _switch(item.config, farm, index)
    if not any(name == BOARD_PROPERTY for name, _ in item.user_properties):
        item.user_properties.append((BOARD_PROPERTY, farm.pool[index].label))


class BoardSummary:
    """Per board, each test's outcome, and the summary lines (registered per run, because
    ``pytest_runtest_logreport`` is not given the config)."""

    def __init__(self, farm: FarmState) -> None:
        self.farm = farm

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count each test's outcome for its board (the controller counts xdist's reports)."""
        label = next((str(v) for k, v in report.user_properties if k == BOARD_PROPERTY), None)
        if label is None:
            return
        per_board = self.farm.outcomes.setdefault(label, {})
        old = per_board.get(report.nodeid)
        if report.failed:
            outcome = "failed" if report.when == "call" else "error"
        elif report.skipped:
            outcome = "skipped"
        elif report.when == "call":
            outcome = "passed"
        else:
            return
        if old in ("failed", "error") or (old == "skipped" and outcome == "passed"):
            return
        per_board[report.nodeid] = outcome

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """One line per board: ``esp32@/dev/ttyUSB0: 40 passed, 2 skipped``."""
        farm = self.farm
        if farm.pool is None or len(farm.pool) < 2:
            return
        if terminalreporter.config.option.collectonly:
            return  # nothing ran
        order = ("passed", "failed", "error", "skipped")
        for board in farm.pool:
            counts = Counter(farm.outcomes.get(board.label, {}).values())
            parts = [f"{counts[o]} {o}" for o in order if counts[o]] or ["no tests"]
            terminalreporter.write_line(f"mpsession: {board.label}: {', '.join(parts)}")
