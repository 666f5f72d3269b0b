"""The routing scheduler on its own: fake workers, a loop that plays pytest-xdist's part.

A worker runs a test only when it has a next one queued or has been told to shut down
(xdist's workers need the next item to run the current one): the loop below does the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_mpsession.farm.scheduler import RoutingScheduling


@dataclass
class FakeGateway:
    id: str


@dataclass(eq=False)
class FakeNode:
    name: str
    collection: list[str]
    queue: list[int] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)
    shutting_down: bool = False

    def __post_init__(self) -> None:
        self.gateway = FakeGateway(self.name)

    def send_runtest_some(self, indices: Sequence[int]) -> None:
        assert not self.shutting_down, f"{self.name} got tests after shutdown"
        self.queue.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


class FakeConfig:
    def __init__(self, workers: int, maxchunk: int | None = None) -> None:
        self.option = type("O", (), {"tx": ["popen"] * workers, "numprocesses": workers})()
        self._maxchunk = maxchunk

    def getvalue(self, name: str) -> Any:
        return getattr(self.option, name)

    def getoption(self, name: str, default: Any = None) -> Any:
        if name == "maxschedchunk":
            return self._maxchunk
        return getattr(self.option, name, default)


def make(
    collections: dict[str, list[str]], maxchunk: int | None = None
) -> tuple[RoutingScheduling, list[FakeNode], FakeConfig]:
    config = FakeConfig(len(collections), maxchunk)
    sched = RoutingScheduling(config)  # type: ignore[arg-type]
    nodes = [FakeNode(name, coll) for name, coll in collections.items()]
    for node in nodes:
        sched.add_node(node)  # type: ignore[arg-type]
    for node in nodes:
        assert not sched.collection_is_completed
        sched.add_node_collection(node, node.collection)  # type: ignore[arg-type]
    assert sched.collection_is_completed
    sched.schedule()
    return sched, nodes, config


def run(sched: RoutingScheduling, nodes: list[FakeNode], steps: int = 10_000) -> None:
    """Play the workers: each step, every worker that can run its first test runs it."""
    for _ in range(steps):
        if sched.tests_finished:
            for node in nodes:
                node.shutdown()
        progressed = False
        for node in nodes:
            if node not in sched.nodes:
                continue
            if node.queue and (len(node.queue) >= 2 or node.shutting_down):
                index = node.queue.pop(0)
                node.ran.append(node.collection[index])
                sched.mark_test_complete(node, index, 0.01)  # type: ignore[arg-type]
                progressed = True
        if not progressed:
            break
    assert sched.tests_finished
    assert not sched.has_pending


def test_each_test_runs_once_on_a_worker_whose_board_can_run_it() -> None:
    common = [f"t.py::common{i}" for i in range(20)]
    only_a = [f"t.py::a{i}" for i in range(7)]
    only_b = [f"t.py::b{i}" for i in range(5)]
    sched, (a, b), _ = make({"gw0": common[:10] + only_a + common[10:], "gw1": only_b + common})
    run(sched, [a, b])
    assert sorted(a.ran + b.ran) == sorted(common + only_a + only_b)
    assert set(only_a) <= set(a.ran) and set(only_b) <= set(b.ran)
    # the tests any board can run balance the load
    assert abs(len(a.ran) - len(b.ran)) <= 4
    assert a.shutting_down and b.shutting_down


def test_disjoint_collections() -> None:
    sched, (a, b, c), _ = make(
        {"gw0": ["x::1", "x::2", "x::3"], "gw1": ["y::1"], "gw2": ["z::1", "z::2"]}
    )
    run(sched, [a, b, c])
    assert a.ran == ["x::1", "x::2", "x::3"] and b.ran == ["y::1"] and c.ran == ["z::1", "z::2"]


def test_a_worker_with_nothing_to_do_is_stopped_at_once() -> None:
    sched, (a, b), _ = make({"gw0": ["x::1", "x::2", "x::3", "x::4"], "gw1": []})
    assert b.shutting_down and not b.queue
    run(sched, [a, b])
    assert a.ran == ["x::1", "x::2", "x::3", "x::4"]


def test_empty_run() -> None:
    sched, nodes, _ = make({"gw0": [], "gw1": []})
    assert sched.tests_finished and all(n.shutting_down for n in nodes)


def test_identical_collections_behave_like_load_scheduling() -> None:
    tests = [f"t::{i}" for i in range(40)]
    sched, (a, b), _ = make({"gw0": tests, "gw1": tests})
    run(sched, [a, b])
    assert sorted(a.ran + b.ran) == sorted(tests)
    assert 15 <= len(a.ran) <= 25


def test_maxschedchunk_limits_each_send() -> None:
    tests = [f"t::{i}" for i in range(40)]
    sched, (a, b), _ = make({"gw0": tests, "gw1": tests}, maxchunk=1)
    assert len(a.queue) <= 2 and len(b.queue) <= 2
    run(sched, [a, b])
    assert sorted(a.ran + b.ran) == sorted(tests)


def test_a_crashed_worker_gives_its_tests_back() -> None:
    common = [f"t::c{i}" for i in range(10)]
    only_a = [f"t::a{i}" for i in range(6)]
    sched, (a, b), _ = make({"gw0": only_a + common, "gw1": common})
    queued = [a.collection[i] for i in a.queue]
    crashed = sched.remove_node(a)  # type: ignore[arg-type]
    assert crashed == queued[0]
    for _ in range(100):
        if not b.queue:
            break
        index = b.queue.pop(0)
        b.ran.append(b.collection[index])
        sched.mark_test_complete(b, index, 0.01)  # type: ignore[arg-type]
    # gw1 ran every test it can, once; what only gw0's board can run waits for its successor
    assert sorted(b.ran) == sorted(common)
    assert b.shutting_down
    assert sorted(sched.collection[i] for i in sched.pending) == sorted(set(only_a) - {crashed})
    assert not sched.tests_finished


def test_a_replacement_worker_takes_over() -> None:
    only_a = [f"t::a{i}" for i in range(30)]
    common = [f"t::c{i}" for i in range(4)]
    sched, (a, b), _ = make({"gw0": only_a + common, "gw1": common})
    crashed = sched.remove_node(a)  # type: ignore[arg-type]
    assert crashed is not None
    clone = FakeNode("gw2", only_a + common)
    sched.add_node(clone)  # type: ignore[arg-type]
    sched.add_node_collection(clone, clone.collection)  # type: ignore[arg-type]
    sched.schedule()
    run(sched, [b, clone])
    assert sorted(clone.ran + b.ran) == sorted(set(only_a + common) - {crashed})
    assert set(only_a) - {crashed} <= set(clone.ran)


def test_rerun_puts_a_test_back_for_a_worker_that_can_run_it() -> None:
    only_b = [f"t::b{i}" for i in range(8)]
    sched, (a, b), _ = make({"gw0": ["t::1", "t::2", "t::9"], "gw1": only_b})
    sched.mark_test_pending("t::b0")  # pytest-rerunfailures and the like
    run(sched, [a, b])
    assert b.ran.count("t::b0") == 2 and "t::b0" not in a.ran


def test_work_stealing_is_not_offered() -> None:
    sched, (a, _b), _ = make({"gw0": ["t::1"], "gw1": ["t::1"]})
    with pytest.raises(NotImplementedError):
        sched.remove_pending_tests_from_node(a, [0])  # type: ignore[arg-type]


def test_many_short_tests_go_out_in_few_chunks() -> None:
    """573 tests any of two boards can run (tests/basics on a pool): handed out in chunks,
    refilled before a worker runs dry, so the controller's round trip is not paid per test
    and both workers share the work."""
    tests = [f"basics/f{i}.py::f{i}.py" for i in range(573)]
    sched, (a, b), _ = make({"gw0": list(tests), "gw1": list(tests)})
    sends: list[int] = []
    for node in (a, b):
        original = node.send_runtest_some

        def counted(indices: Sequence[int], original: Any = original) -> None:
            sends.append(len(indices))
            original(indices)

        node.send_runtest_some = counted  # type: ignore[method-assign]
    run(sched, [a, b])
    assert sorted(a.ran + b.ran) == sorted(tests)
    assert abs(len(a.ran) - len(b.ran)) <= 4
    assert len(sends) <= 60, sends
    assert max(sends) >= 50, sends


def test_a_worker_left_alone_takes_bigger_chunks() -> None:
    """Once the only other worker that shares its tests is gone, a worker's refills are
    sized for one (what is cached about who shares what is refreshed)."""
    tests = [f"t.py::t{i}" for i in range(200)]
    sched, (a, b), _ = make({"gw0": list(tests), "gw1": list(tests)})
    assert len(a.queue) == len(b.queue) == 25  # 200 tests, 2 workers: a quarter of a share
    sched.remove_node(b)  # type: ignore[arg-type]
    for _ in range(24):
        index = a.queue.pop(0)
        a.ran.append(a.collection[index])
        sched.mark_test_complete(a, index, 0.01)  # type: ignore[arg-type]
    # 175 + the crashed worker's 25 (less the one it was running) pending: refilled for one
    assert len(a.queue) > 25
    run(sched, [a])
    assert len(set(a.ran)) == 199  # all but the crashed test
