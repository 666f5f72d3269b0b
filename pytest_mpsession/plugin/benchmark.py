"""``device_benchmark`` and its pytest-benchmark hooks (the work is
:mod:`pytest_mpsession.benchmark`).

- at collection, every test that uses ``device_benchmark`` gets a :class:`BoardClock` as its
  pytest-benchmark ``timer``, through its ``benchmark`` marker (merged with the test's own);
- the fixture hands the test a :class:`DeviceBenchmark` on the test's device session;
- ``pytest_benchmark_update_machine_info`` puts the board into the saved machine info;
- ``pytest_benchmark_compare_machine_info`` (a wrapper: pytest-benchmark compares at
  configure time, before a board is open) leaves the board out of that comparison, and the
  terminal summary says when a compared run was on another board.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_mpsession.benchmark import (
    MACHINE_INFO_KEY,
    NOT_USED_MESSAGE,
    BoardClock,
    DeviceBenchmark,
    RoundsPolicy,
    board_facts,
)
from pytest_mpsession.plugin.state import CALL_REPORT

if TYPE_CHECKING:
    from pytest_mpsession.session.session import DeviceSession

__all__ = ["device_benchmark"]

BENCH_FIXTURE = "device_benchmark"

_CLOCK = pytest.StashKey[BoardClock]()
#: the board of this run's device benchmarks (machine info)
_BOARD = pytest.StashKey[dict[str, str]]()
#: (when, board) of each compared run
_SAVED_BOARDS = pytest.StashKey[list[tuple[str, dict[str, str]]]]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each ``device_benchmark`` test a board clock as its pytest-benchmark timer."""
    if not config.pluginmanager.hasplugin("benchmark"):
        return  # -p no:benchmark: device_benchmark's tests fail on the missing fixture
    for item in items:
        if BENCH_FIXTURE not in getattr(item, "fixturenames", ()):
            continue
        clock = BoardClock()
        item.stash[_CLOCK] = clock
        mark = item.get_closest_marker("benchmark")
        kwargs = dict(mark.kwargs) if mark is not None else {}
        kwargs["timer"] = clock
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)


@pytest.fixture
def device_benchmark(
    request: pytest.FixtureRequest, benchmark: Any, device_session: DeviceSession
) -> Generator[Callable[..., str], None, None]:
    """Time board code by the board's own clock, with pytest-benchmark.

    ``device_benchmark(code, setup=None)`` runs ``setup`` once, then ``code`` for
    pytest-benchmark's rounds (``--benchmark-min-rounds``, ``--benchmark-max-time`` or the
    test's ``benchmark`` marker), each timed on the board with ``time.ticks_us``; returns
    what ``code`` printed. The link is not in the figure; its round trip is in
    ``extra_info``. With ``--benchmark-disable`` the code runs once.
    """
    clock = request.node.stash.get(_CLOCK, None)
    if clock is None:
        pytest.fail(
            "device_benchmark: request it as a test argument (not with request.getfixturevalue)",
            pytrace=False,
        )
    facts = board_facts(device_session)
    request.config.stash[_BOARD] = facts
    policy = RoundsPolicy.from_config(request.config, request.node.get_closest_marker("benchmark"))
    run = DeviceBenchmark(benchmark, device_session, clock, policy)
    benchmark.extra_info["board"] = f"{device_session.manager.capabilities.describe()}"
    benchmark.extra_info["board_port"] = facts["port"]
    yield run
    report = request.node.stash.get(CALL_REPORT, None)
    if report is None or not report.passed:
        # The test's failure is its report; pytest-benchmark's "fixture was not used"
        # warning at its teardown (next) would be a second, wrong one when the test failed
        # before its benchmark ran. pytest restores its warning filters after the test.
        warnings.filterwarnings("ignore", message=NOT_USED_MESSAGE)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    """The board of this run's device benchmarks, in the saved machine info."""
    facts = config.stash.get(_BOARD, None)
    if facts is not None:
        machine_info[MACHINE_INFO_KEY] = dict(facts)


@pytest.hookimpl(optionalhook=True, wrapper=True)
def pytest_benchmark_compare_machine_info(
    config: pytest.Config,
    benchmarksession: Any,
    machine_info: dict[str, Any],
    compared_benchmark: dict[str, Any],
) -> Generator[None, Any, Any]:
    """pytest-benchmark compares machine infos at configure time, before a board is open:
    compare the host part then, and the boards once a device benchmark ran."""
    saved = (compared_benchmark.get("machine_info") or {}).get(MACHINE_INFO_KEY)
    borrowed = isinstance(saved, dict) and MACHINE_INFO_KEY not in machine_info
    if borrowed:
        assert isinstance(saved, dict)
        when = str(compared_benchmark.get("datetime", "")) or "the saved run"
        config.stash.setdefault(_SAVED_BOARDS, []).append((when, saved))
        machine_info[MACHINE_INFO_KEY] = saved
    try:
        return (yield)
    finally:
        if borrowed:
            del machine_info[MACHINE_INFO_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With ``--benchmark-compare``: say when the compared run was on another board."""
    current = config.stash.get(_BOARD, None)
    if current is None:
        return
    for when, saved in config.stash.get(_SAVED_BOARDS, []):
        if saved != current:
            diff = ", ".join(
                f"{k} {saved.get(k, '?')!r} -> {current.get(k, '?')!r}"
                for k in sorted(set(saved) | set(current))
                if saved.get(k) != current.get(k)
            )
            terminalreporter.write_line(
                f"mpsession: benchmarks compared with a run on another board ({when}): {diff}",
                yellow=True,
            )
