"""A pool of boards: who each one is, found for all of them at once.

Routing has to know every board of the pool before the first test is handed out. The
process that hands tests out (the pytest-xdist controller, or the one pytest process of a
run without xdist) therefore asks every board for its capabilities itself, all boards in
parallel: open the port, one identity exchange, pytest's cache (keyed by the board's unique
id and firmware, shared with the workers) or else the full probe. (labgrid places under
xdist are the exception: each worker identifies its own board and the pool is put together
at the rendezvous, see ``farm/hooks.py`` ``share_board``.) Nothing here knows pytest beyond
the cache object it is handed.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.communicator import Communicator

__all__ = ["PoolBoard", "PoolError", "board_labels", "probe_board", "probe_pool"]


class PoolError(Exception):
    """A board of the pool could not be used; ``port`` names it, the message says why."""

    def __init__(self, port: str, message: str) -> None:
        super().__init__(message)
        self.port = port


@dataclass(frozen=True)
class PoolBoard:
    """One board of the pool as the scheduler and the workers see it."""

    index: int
    port: str
    #: short and stable: ``esp32@mpmock://esp32`` (platform @ port), unique in the pool
    label: str
    caps: DeviceCapabilities

    def to_dict(self) -> dict[str, Any]:
        """A plain dict that travels to the xdist workers (``workerinput``)."""
        return {
            "index": self.index,
            "port": self.port,
            "label": self.label,
            "caps": self.caps.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolBoard:
        """The inverse of :meth:`to_dict`."""
        from pytest_mpsession.capabilities import DeviceCapabilities

        return cls(
            index=int(data["index"]),
            port=str(data["port"]),
            label=str(data["label"]),
            caps=DeviceCapabilities.from_dict(data["caps"]),
        )


def board_labels(ports: Sequence[str], platforms: Sequence[str]) -> list[str]:
    """``platform@port`` for each board; a repeated label gets ``#2``, ``#3`` (two emulated
    boards of one profile have the same port)."""
    out: list[str] = []
    for port, platform in zip(ports, platforms, strict=True):
        base = f"{platform}@{port}"
        label, n = base, 1
        while label in out:
            n += 1
            label = f"{base}#{n}"
        out.append(label)
    return out


def probe_board(
    comm: Communicator,
    probes: FeatureProbes,
    cache: Any | None,
    timeout: float,
) -> tuple[DeviceCapabilities, bool]:
    """(capabilities, whether they came from the cache) of the board behind ``comm``:
    one identity exchange, then pytest's cache, else the full probe (written to the cache)."""
    from pytest_mpsession.capabilities import DeviceCapabilities, cache_key, detect, identify

    ident = identify(comm, timeout=timeout)
    key = cache_key(ident.unique_id, ident.firmware_version, probes)
    if cache is not None and key:
        data = cache.get(key, None)
        if isinstance(data, dict):
            try:
                return DeviceCapabilities.from_dict(data), True
            except ValueError:
                pass
    caps = detect(comm, probes, timeout=timeout, identity=ident)
    key = cache_key(caps.unique_id, caps.firmware_version, probes)
    if cache is not None and key:
        cache.set(key, caps.to_dict())
    if comm.raw_paste is False:
        # an old board probed in pieces: give its RAM back before anyone else uses it
        comm.soft_reset(timeout=timeout)
    return caps, False


def _probe_port(
    port: str, probes: FeatureProbes, cache: Any | None, baudrate: int, timeout: float
) -> DeviceCapabilities:
    from pytest_mpsession.communicator import Communicator
    from pytest_mpsession.errors import MpSessionError

    try:
        comm = Communicator.open(port, baudrate=baudrate, timeout=timeout)
    except (MpSessionError, OSError, ValueError) as exc:
        raise PoolError(port, f"cannot use the board at {port}: {_one_line(exc)}") from None
    try:
        return probe_board(comm, probes, cache, timeout)[0]
    except (MpSessionError, OSError, ValueError) as exc:
        raise PoolError(
            port, f"the board at {port} does not work as a MicroPython board: {_one_line(exc)}"
        ) from None
    finally:
        try:
            comm.close()
        except Exception:  # closing after the answer (or a failure): nothing left to report
            pass


@dataclass(frozen=True)
class Probed:
    """One board's answer: its capabilities and how long identifying it took."""

    caps: DeviceCapabilities
    seconds: float


def start_probes(
    ports: Sequence[str],
    probes: FeatureProbes,
    cache: Any | None,
    *,
    baudrate: int,
    timeout: float,
    probe: Callable[[str], DeviceCapabilities] | None = None,
) -> list[concurrent.futures.Future[Probed]]:
    """Identify every board at once (one thread each; each port is closed again): a future
    per port, in pool order, whose exception is a :class:`PoolError` naming its port."""
    run = probe or (lambda port: _probe_port(port, probes, cache, baudrate, timeout))

    def timed(port: str) -> Probed:
        start = time.monotonic()
        try:
            caps = run(port)
        except PoolError:
            raise
        except Exception as exc:
            raise PoolError(port, f"cannot use the board at {port}: {_one_line(exc)}") from None
        return Probed(caps, time.monotonic() - start)

    executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, len(ports)), thread_name_prefix="mpsession-probe"
    )
    futures = [executor.submit(timed, port) for port in ports]
    executor.shutdown(wait=False)
    return futures


def make_pool(ports: Sequence[str], caps: Sequence[DeviceCapabilities]) -> list[PoolBoard]:
    """The pool's boards, labelled, in pool order."""
    labels = board_labels(ports, [c.device_type for c in caps])
    return [
        PoolBoard(index=i, port=port, label=label, caps=c)
        for i, (port, label, c) in enumerate(zip(ports, labels, caps, strict=True))
    ]


def probe_pool(
    ports: Sequence[str],
    probes: FeatureProbes,
    cache: Any | None,
    *,
    baudrate: int,
    timeout: float,
    probe: Callable[[str], DeviceCapabilities] | None = None,
) -> list[PoolBoard]:
    """Every board's capabilities, all ports at once; :class:`PoolError` for the first port
    (in pool order) that failed."""
    futures = start_probes(ports, probes, cache, baudrate=baudrate, timeout=timeout, probe=probe)
    return make_pool(ports, [f.result().caps for f in futures])


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
