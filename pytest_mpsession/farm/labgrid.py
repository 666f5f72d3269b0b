"""Boards from a labgrid coordinator: ``labgrid://PLACE`` and ``labgrid://?TAG=VALUE&...``.

URL format::

    labgrid://PLACE                  the place named PLACE
    labgrid://?TAG=VALUE[&TAG=VALUE] any place with every one of these tags

The coordinator is ``LG_COORDINATOR`` (``HOST[:PORT]``, port 20408 by default), as
labgrid's own tools take it. For the run, each board is a place of its own: a reservation
is made for it (filtered by name or by the tags: the coordinator hands a free place to the
oldest waiting reservation, so two runs never get the same place), and the allocated
place is acquired; at the end it is released and the reservation cancelled. The place's
``NetworkSerialPort`` is the link: ``rfc2217://HOST:PORT?ign_set_control`` (ser2net, as
the exporter runs it, does not answer RFC 2217's control option, so pyserial must not wait
for it; DTR and RTS are never touched). Where the place has a power port, a hard reset of
the board is a power cycle through labgrid's driver for it (:class:`PlacePower`).

labgrid's :class:`~labgrid.remote.client.ClientSession` is the connection (places,
resources and their updates). Its command methods (``acquire``, ``create_reservation``,
...) are the ``labgrid-client`` commands: they read an argparse namespace and print, and
one of them prints the reservation token instead of returning it. So the requests are sent
through the session's own gRPC stub with labgrid's generated messages, the same calls those
commands make. Its coroutines run on a private event loop in a daemon thread, so the pytest
process's own asyncio state is left alone.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "SCHEME",
    "AcquiredPlace",
    "LabgridError",
    "PlacePower",
    "PlaceRequest",
    "acquire_places",
    "import_labgrid",
    "is_labgrid_url",
    "parse_url",
    "release_places",
]

SCHEME = "labgrid://"
#: where labgrid's tools look for the coordinator
COORDINATOR_ENV = "LG_COORDINATOR"
DEFAULT_COORDINATOR = "127.0.0.1:20408"
_FORM = "labgrid://PLACE or labgrid://?TAG=VALUE[&TAG=VALUE...]"

#: labgrid power resources and the driver that switches each, as ``labgrid-client power``
#: pairs them (resources that need no proxy or local hardware on this host)
POWER_DRIVERS = {
    "NetworkPowerPort": "NetworkPowerDriver",
    "PDUDaemonPort": "PDUDaemonDriver",
    "TasmotaPowerPort": "TasmotaPowerDriver",
}

T = TypeVar("T")


class LabgridError(Exception):
    """Something labgrid could not give: one line saying what and how to fix it."""


def is_labgrid_url(port: str) -> bool:
    """True for a ``labgrid://`` port."""
    return port.lower().startswith(SCHEME)


@dataclass(frozen=True)
class PlaceRequest:
    """What a ``labgrid://`` URL asks for: a place by name, or any place with tags."""

    url: str
    place: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        """``place 'bench-3'`` or ``a place with tags board=esp32, lab=2``."""
        if self.place is not None:
            return f"place {self.place!r}"
        return "a place with tags " + ", ".join(f"{k}={v}" for k, v in self.tags)

    def filter(self) -> dict[str, str]:
        """The coordinator's reservation filter (it knows a place's name as the tag ``name``)."""
        if self.place is not None:
            return {"name": self.place}
        return dict(self.tags)


def parse_url(url: str) -> PlaceRequest:
    """``labgrid://...`` -> :class:`PlaceRequest`; ``ValueError`` naming the expected form."""
    if not is_labgrid_url(url):
        raise ValueError(f"{url!r} is not a labgrid URL: write {_FORM}")
    parts = urllib.parse.urlsplit(url)
    place = urllib.parse.unquote(parts.netloc + parts.path).strip("/")
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if place and query:
        raise ValueError(f"{url!r} gives both a place and tags: write {_FORM}")
    if place:
        if "/" in place:
            raise ValueError(f"{url!r}: a place name has no '/': write {_FORM}")
        return PlaceRequest(url=url, place=place)
    if not query:
        raise ValueError(f"{url!r} names no place and no tags: write {_FORM}")
    tags: dict[str, str] = {}
    for key, value in query:
        if not key or not value:
            raise ValueError(
                f"{url!r}: tag {key or '?'}={value} needs a name and a value: write {_FORM}"
            )
        if key in tags and tags[key] != value:
            raise ValueError(f"{url!r}: tag {key} is given twice: write {_FORM}")
        tags[key] = value
    return PlaceRequest(url=url, tags=tuple(sorted(tags.items())))


@dataclass(frozen=True)
class AcquiredPlace:
    """A place this run holds: what was asked, which place, and how to reach its board."""

    request: PlaceRequest
    place: str
    #: the board's link: ``rfc2217://HOST:PORT?ign_set_control``
    serial_url: str
    #: the reservation that got the place (cancelled at release)
    token: str
    #: the place's power resource, as labgrid describes it: ``{"cls": ..., "params": ...}``
    power: dict[str, Any] | None = None
    coordinator: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the xdist workers."""
        return {
            "url": self.request.url,
            "place": self.place,
            "serial_url": self.serial_url,
            "token": self.token,
            "power": self.power,
            "coordinator": self.coordinator,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AcquiredPlace:
        """The inverse of :meth:`to_dict`."""
        return cls(
            request=parse_url(str(data["url"])),
            place=str(data["place"]),
            serial_url=str(data["serial_url"]),
            token=str(data["token"]),
            power=data.get("power"),
            coordinator=str(data.get("coordinator", "")),
        )


def coordinator_address() -> str:
    """``LG_COORDINATOR``, else labgrid's default."""
    return os.environ.get(COORDINATOR_ENV, "").strip() or DEFAULT_COORDINATOR


def import_labgrid() -> None:
    """Import labgrid's client (``ImportError`` when labgrid is not installed), past
    pytest's assertion rewriting.

    labgrid ships a pytest plugin, so pytest marks every module of labgrid for assertion
    rewriting, even with ``-p no:labgrid``; where bytecode is not written
    (``PYTHONDONTWRITEBYTECODE``, a read-only install) each run then rewrites and compiles
    labgrid from source: about 2 s, against 0.7 s for a plain import. Nothing of labgrid's
    runs as a test here, so its modules are imported by Python's own importer."""
    import sys

    if "labgrid.remote.client" in sys.modules:
        return
    rewriters = [
        (i, finder)
        for i, finder in enumerate(sys.meta_path)
        if type(finder).__name__ == "AssertionRewritingHook"
    ]
    for _, finder in rewriters:
        sys.meta_path.remove(finder)
    try:
        import labgrid
        import labgrid.remote.client
        import labgrid.remote.generated.labgrid_coordinator_pb2  # noqa: F401
    finally:
        for i, finder in rewriters:
            sys.meta_path.insert(i, finder)


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def _loop() -> asyncio.AbstractEventLoop:
    """The process's one private event loop for labgrid, run by a daemon thread.

    One loop for the life of the process: grpc's asyncio layer binds to the loop it first
    runs on, and pytest's own thread is left without a loop of ours."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run, name="mpsession-labgrid", daemon=True).start()
            started.wait()
            _LOOP = loop
        return _LOOP


@dataclass
class _Session:
    """A labgrid client session on a private event loop (used by one thread)."""

    address: str
    timeout: float
    loop: asyncio.AbstractEventLoop = field(default_factory=_loop)
    session: Any = None
    changed: asyncio.Event | None = None

    def __enter__(self) -> _Session:
        try:
            self.session = self.run(asyncio.wait_for(self._start(), self.timeout))
        except (asyncio.TimeoutError, Exception) as exc:
            raise LabgridError(
                f"cannot reach the labgrid coordinator at {self.address} "
                f"({COORDINATOR_ENV}): {_one_line(exc) or 'no answer'}; start "
                "labgrid-coordinator there or point LG_COORDINATOR at it"
            ) from None
        return self

    async def _start(self) -> Any:
        # labgrid's start_session() runs the loop itself and stashes it for the thread;
        # this does what it does, on this private loop, under a deadline.
        from labgrid.remote.client import ClientSession
        from labgrid.util.proxy import proxymanager

        address = proxymanager.get_grpc_address(self.address, default_port=20408)
        self.changed = asyncio.Event()
        # A coordinator that is slow to take the connection (a loaded machine) ends
        # labgrid's start with "Could not connect to coordinator" at once (gRPC fails fast):
        # wait until the channel is connected (the caller's deadline bounds it), and try a
        # fresh session again when the stream still drops while starting.
        for attempt in range(3):
            session = ClientSession(address, self.loop)
            try:
                await session.channel.channel_ready()
                return await self._subscribe(session)
            except BaseException as exc:  # also the deadline's cancellation: close, go on
                try:
                    await session.channel.close()
                except Exception:  # closing what did not work: the first error counts
                    pass
                if attempt == 2 or not isinstance(exc, Exception):
                    raise
        raise AssertionError("unreachable")

    async def _subscribe(self, session: Any) -> Any:
        """Start ``session`` with the update hooks that wake :meth:`wait_until`."""
        # Wake the waits below whenever the coordinator sends a change (labgrid's own
        # handlers run first and keep the session's view of places and resources).
        on_resource, on_place = session.on_resource_changed, session.on_place_changed

        async def resource_changed(*args: Any) -> None:
            await on_resource(*args)
            self._notify()

        async def place_changed(*args: Any) -> None:
            await on_place(*args)
            self._notify()

        session.on_resource_changed = resource_changed
        session.on_place_changed = place_changed
        await session.start()
        return session

    def _notify(self) -> None:
        assert self.changed is not None
        self.changed.set()

    def run(self, coro: Any) -> Any:
        """Run ``coro`` on the private loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def gather(self, method: str, requests: Sequence[Any]) -> list[Any]:
        """Call ``method`` once per request, all at once; each result or its exception."""

        async def calls() -> list[Any]:
            stub = getattr(self.session.stub, method)
            return list(await asyncio.gather(*(stub(r) for r in requests), return_exceptions=True))

        result: list[Any] = self.run(calls())
        return result

    def rpc(self, method: str, request: Any) -> Any:
        """Call the coordinator's ``method`` (made inside the running loop, as grpc wants)."""

        async def call() -> Any:
            return await getattr(self.session.stub, method)(request)

        return self.run(call())

    async def wait_until(self, check: Callable[[], T | None], deadline: float) -> T | None:
        """Block until ``check()`` gives something (re-checked at each update from the
        coordinator) or the ``time.monotonic()`` deadline passes (then ``None``)."""
        assert self.changed is not None
        while True:
            self.changed.clear()
            found = check()
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0 or self.session.stopping.is_set():
                return None
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    def __exit__(self, *exc: object) -> None:
        session = self.session
        try:
            if session is not None:
                self.run(session.stop())
                self.run(session.close())
        except Exception:  # the coordinator went away: nothing to hand back to it
            pass


def _grpc_error(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    if callable(details):
        try:
            return str(details())
        except Exception:
            pass
    return _one_line(exc)


def acquire_places(
    requests: Sequence[PlaceRequest],
    *,
    timeout: float,
    address: str | None = None,
) -> list[AcquiredPlace]:
    """Reserve and acquire one place per request (distinct places), waiting up to
    ``timeout`` seconds for free ones. :class:`LabgridError` when the coordinator cannot be
    reached, a place does not exist, no place has the tags, or none became free in time;
    whatever was already acquired is released again before the error."""
    addr = address or coordinator_address()
    return _acquire(requests, addr, timeout)


def _acquire(requests: Sequence[PlaceRequest], address: str, timeout: float) -> list[AcquiredPlace]:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

    deadline = time.monotonic() + timeout
    got: list[AcquiredPlace] = []
    tokens: list[str] = []
    acquired: list[str] = []
    with _Session(address, timeout) as lab:
        session = lab.session
        try:
            for request in requests:
                _check_exists(session, request)
            # every reservation first: the coordinator allocates them together
            for request in requests:
                fltr = pb2.Reservation.Filter(filter=request.filter())
                try:
                    reply = lab.rpc(
                        "CreateReservation",
                        pb2.CreateReservationRequest(filters={"main": fltr}, prio=0.0),
                    )
                except Exception as exc:
                    raise LabgridError(
                        f"labgrid coordinator at {address} refused a reservation for "
                        f"{request.describe()}: {_grpc_error(exc)}"
                    ) from None
                tokens.append(str(reply.reservation.token))
            names: list[str] = []
            for request, token in zip(requests, tokens, strict=True):
                allocated = functools.partial(_allocated, session, token)
                name = lab.run(lab.wait_until(allocated, deadline))
                if name is None:
                    raise LabgridError(
                        f"no free labgrid place for {request.url} within {timeout:g} s: "
                        f"{_busy(session, request)}; wait for it or raise --mp-timeout"
                    )
                names.append(name)
            # acquired together: each waits for its exporter to start ser2net
            results = lab.gather(
                "AcquirePlace", [pb2.AcquirePlaceRequest(placename=n) for n in names]
            )
            acquired.extend(n for n, r in zip(names, results, strict=True) if not _failed(r))
            for request, name, result in zip(requests, names, results, strict=True):
                if _failed(result):
                    raise LabgridError(
                        f"cannot acquire labgrid place {name!r} ({request.url}): "
                        f"{_grpc_error(result)}"
                    )
            # the exporters start ser2net for every acquired place at once
            for request, name, token in zip(requests, names, tokens, strict=True):
                got.append(_place_facts(lab, request, name, token, address, deadline))
        except BaseException:
            _release_in(lab, acquired, tokens)
            raise
    return got


def _failed(result: Any) -> bool:
    return isinstance(result, BaseException)


def _check_exists(session: Any, request: PlaceRequest) -> None:
    places: dict[str, Any] = session.places
    if request.place is not None:
        if request.place not in places:
            known = ", ".join(sorted(places)) or "none"
            raise LabgridError(
                f"labgrid place {request.place!r} ({request.url}) does not exist on the "
                f"coordinator; its places: {known}"
            )
        return
    wanted = dict(request.tags)
    if not any(_has_tags(p, wanted) for p in places.values()):
        known = "; ".join(
            f"{name}: " + (", ".join(f"{k}={v}" for k, v in sorted(p.tags.items())) or "no tags")
            for name, p in sorted(places.items())
        )
        raise LabgridError(
            f"no labgrid place has the tags of {request.url}; places: {known or 'none'}"
        )


def _has_tags(place: Any, wanted: dict[str, str]) -> bool:
    tags: dict[str, str] = dict(place.tags)
    return all(tags.get(k) == v for k, v in wanted.items())


def _allocated(session: Any, token: str) -> str | None:
    """The place the coordinator allocated to reservation ``token``, once it did."""
    for name, place in session.places.items():
        if place.reservation == token:
            return str(name)
    return None


def _busy(session: Any, request: PlaceRequest) -> str:
    """Who holds the places that would do."""
    places: dict[str, Any] = session.places
    if request.place is not None:
        fitting = [places[request.place]] if request.place in places else []
    else:
        fitting = [p for p in places.values() if _has_tags(p, dict(request.tags))]
    held = []
    for place in fitting:
        who = place.acquired or (f"reserved ({place.reservation})" if place.reservation else "")
        held.append(f"{place.name} held by {who or 'another reservation'}")
    return ", ".join(held) or "every fitting place is taken"


def _place_facts(
    lab: _Session, request: PlaceRequest, name: str, token: str, address: str, deadline: float
) -> AcquiredPlace:
    """The serial URL (once the exporter has started ser2net for it) and the power port."""
    session = lab.session

    def ready() -> tuple[str, dict[str, Any] | None] | None:
        place = session.places.get(name)
        if place is None:
            return None
        serial: str | None = None
        power: dict[str, Any] | None = None
        for resource_path in place.acquired_resources:
            exporter, group, _cls, rname = resource_path
            try:
                entry = session.resources[exporter][group][rname]
            except KeyError:
                continue
            params = dict(entry.params)
            if entry.cls == "NetworkSerialPort":
                if not params.get("port") or not entry.avail:
                    return None  # the exporter has not started ser2net yet
                host = str(params.get("host") or "localhost")
                if params.get("protocol", "rfc2217") != "rfc2217":
                    raise LabgridError(
                        f"labgrid place {name!r} exports its serial port as "
                        f"{params.get('protocol')!r}; pytest-mpsession needs rfc2217"
                    )
                serial = f"rfc2217://{_host(host)}:{int(params['port'])}?ign_set_control"
            elif entry.cls in POWER_DRIVERS and power is None:
                params.pop("extra", None)
                power = {"cls": entry.cls, "params": params}
        if serial is None:
            return None
        return serial, power

    found = lab.run(lab.wait_until(ready, deadline))
    if found is None:
        raise LabgridError(
            f"labgrid place {name!r} ({request.url}) has no NetworkSerialPort that became "
            "available: add the board's serial port (RawSerialPort or USBSerialPort) to the "
            "exporter and match it to the place"
        )
    serial, power = found
    return AcquiredPlace(request, name, serial, token, power, address)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def release_places(places: Sequence[AcquiredPlace], *, timeout: float = 10.0) -> list[str]:
    """Release the places and cancel their reservations; the problems, one line each
    (releasing is best effort: it runs at the end of a run, also an interrupted one)."""
    if not places:
        return []
    address = places[0].coordinator or coordinator_address()
    names = [p.place for p in places]
    tokens = [p.token for p in places]

    try:
        with _Session(address, timeout) as lab:
            return _release_in(lab, names, tokens)
    except LabgridError as exc:
        return [str(exc)]


def _release_in(lab: _Session, names: Sequence[str], tokens: Sequence[str]) -> list[str]:
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

    problems = []
    for name in names:
        try:
            lab.rpc("ReleasePlace", pb2.ReleasePlaceRequest(placename=name))
        except Exception as exc:
            problems.append(f"cannot release labgrid place {name!r}: {_grpc_error(exc)}")
    for token in tokens:
        try:
            lab.rpc("CancelReservation", pb2.CancelReservationRequest(token=token))
        except Exception as exc:
            problems.append(f"cannot cancel labgrid reservation {token}: {_grpc_error(exc)}")
    try:
        lab.run(lab.session.sync_with_coordinator())
    except Exception:
        pass
    return problems


class PlacePower:
    """The power switch of a place, through labgrid's own driver for it: a hard reset of
    the board is a power cycle (``off``, the driver's delay, ``on``)."""

    def __init__(self, resource: dict[str, Any], *, place: str = "", delay: float = 1.0) -> None:
        self.cls = str(resource["cls"])
        self.params = dict(resource.get("params") or {})
        self.place = place
        self.delay = delay
        self._driver: Any = None
        if self.cls not in POWER_DRIVERS:
            raise LabgridError(f"labgrid power resource {self.cls} is not supported")

    def _get_driver(self) -> Any:
        if self._driver is None:
            import_labgrid()
            import attr
            from labgrid import Target, target_factory

            target = Target(f"mpsession-{self.place or 'place'}")
            rcls = target_factory.resources[self.cls]
            known = set(attr.fields_dict(rcls))
            args = {k: v for k, v in self.params.items() if k in known}
            target_factory.make_resource(target, self.cls, None, args)
            driver = target_factory.make_driver(target, POWER_DRIVERS[self.cls], None, {})
            if hasattr(driver, "delay"):
                driver.delay = float(self.delay)
            target.activate(driver)
            self._driver = driver
        return self._driver

    def cycle(self) -> bool:
        """Power-cycle the board; False (with nothing raised) when the switch failed."""
        try:
            self._get_driver().cycle()
        except Exception:  # a reset that did not happen: the caller escalates or reports
            return False
        return True


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
