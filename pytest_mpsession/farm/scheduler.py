"""A pytest-xdist scheduler that sends each test only to workers whose board can run it.

Each worker collects the tests its own board can run (and those no board of the pool can
run, skipped with a reason naming every board; see :mod:`pytest_mpsession.farm.hooks`), so
the collections of the workers differ, and a test's presence in a worker's collection is
the routing table: no side channel, nothing the controller has to collect itself. The
scheduler hands tests out like pytest-xdist's ``LoadScheduling`` (chunks, refilled below a
low-water mark), except that a worker is only ever given tests of its own collection, and
the tests that only it can run first, so the tests any board can run balance the load.

A worker that crashes gives its pending tests back; those only its board can run wait for
the worker pytest-xdist starts in its place, which is given the same board.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from xdist.workermanage import (  # type: ignore[import-untyped,unused-ignore]
        WorkerController,
    )

__all__ = ["RoutingScheduling"]


class RoutingScheduling:
    """The xdist ``Scheduling`` protocol over per-worker collections (see the module)."""

    def __init__(
        self,
        config: pytest.Config,
        log: Any | None = None,
        on_collection: Callable[[int], None] | None = None,
    ) -> None:
        """``on_collection(n)`` is told how many tests the run has, once all collections
        are in (xdist counts one worker's collection, which here is only part of it)."""
        from xdist.remote import Producer  # type: ignore[import-untyped,unused-ignore]
        from xdist.workermanage import (  # type: ignore[import-untyped,unused-ignore]
            parse_tx_spec_config,
        )

        self.config = config
        self.numnodes = len(parse_tx_spec_config(config))
        self.log = Producer("routesched") if log is None else log.routesched
        maxchunk = config.getoption("maxschedchunk", None)
        self.maxschedchunk: int | None = int(maxchunk) if maxchunk else None
        #: each worker's collection, and its test id -> index in that collection
        self.node2collection: dict[WorkerController, list[str]] = {}
        self.node2local: dict[WorkerController, dict[str, int]] = {}
        #: the tests sent to each worker and not yet finished (global indices)
        self.node2pending: dict[WorkerController, list[int]] = {}
        #: every test of the run, in the order of the workers' collections
        self.collection: list[str] | None = None
        self._index: dict[str, int] = {}
        #: per worker, the global indices of its collection
        self.node2globals: dict[WorkerController, set[int]] = {}
        #: tests not sent to any worker yet (global indices, in collection order)
        self.pending: list[int] = []
        self._started = False
        self._on_collection = on_collection
        #: per worker, its pending tests and how many workers share them, as last computed:
        #: asked after every finished test, they only change when ``pending`` or the
        #: workers do (see :meth:`_changed`)
        self._mine: dict[WorkerController, list[int]] = {}
        self._share: dict[WorkerController, tuple[tuple[WorkerController, ...], int]] = {}

    # -- the protocol's properties ------------------------------------------------------------

    @property
    def nodes(self) -> list[WorkerController]:
        """The workers in the scheduler."""
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        """True once every initial worker has sent its collection."""
        return self._started or len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        """True when every test ran (a worker keeps its last test until told to stop)."""
        if not self.collection_is_completed or self.pending:
            return False
        return all(len(p) < 2 for p in self.node2pending.values())

    @property
    def has_pending(self) -> bool:
        """True while some test is unsent or running."""
        return bool(self.pending) or any(self.node2pending.values())

    # -- workers come and go ----------------------------------------------------------------

    def add_node(self, node: WorkerController) -> None:
        """A worker is up; tests come once its collection is in."""
        assert node not in self.node2pending
        self.node2pending[node] = []

    def add_node_collection(self, node: WorkerController, collection: Sequence[str]) -> None:
        """The tests ``node``'s board can run (a replacement worker after a crash too)."""
        assert node in self.node2pending
        self.node2collection[node] = list(collection)
        self.node2local[node] = {nodeid: i for i, nodeid in enumerate(collection)}
        if self.collection is not None:
            unknown = [t for t in collection if t not in self._index]
            if unknown:
                self.log(f"{node.gateway.id} collected {len(unknown)} tests no one else has")
            self.node2globals[node] = {self._index[t] for t in collection if t in self._index}
        self._changed()

    def remove_node(self, node: WorkerController) -> str | None:
        """A worker is gone: its unfinished tests go back to the pending ones (the first of
        them, the one it was running, is returned as the crashed test). A test that only
        its board can run waits for the worker pytest-xdist starts in its place (it gets
        the same board); when xdist starts none, it stops the run itself."""
        pending = self.node2pending.pop(node)
        self.node2collection.pop(node, None)
        self.node2local.pop(node, None)
        self.node2globals.pop(node, None)
        if not pending:
            return None
        assert self.collection is not None
        crashed = self.collection[pending.pop(0)]
        self.pending[:0] = pending
        self._changed()
        for other in list(self.node2pending):
            self.check_schedule(other)
        return crashed

    # -- scheduling -----------------------------------------------------------------------------

    def schedule(self) -> None:
        """Start handing tests out (later calls: refill every worker, e.g. a new one)."""
        assert self.collection_is_completed
        if self._started:
            for node in self.nodes:
                self.check_schedule(node)
            return
        self._started = True
        order: list[str] = []
        for collection in self.node2collection.values():
            for nodeid in collection:
                if nodeid not in self._index:
                    self._index[nodeid] = len(order)
                    order.append(nodeid)
        self.collection = order
        if self._on_collection is not None:
            self._on_collection(len(order))
        for node, collection in self.node2collection.items():
            self.node2globals[node] = {self._index[t] for t in collection}
        self.pending[:] = range(len(order))
        self._changed()
        if self.maxschedchunk is None:
            self.maxschedchunk = max(1, len(order))
        chunks = {}  # each worker's first chunk, sized before any is sent (as xdist's do)
        for node in self.nodes:
            mine = self._pending_for(node)
            share = max(1, len(self._sharing(mine)))
            chunk = max(2, min(len(mine) // share // 4, self.maxschedchunk))
            if len(mine) <= 2 * share:
                chunk = max(1, -(-len(mine) // share))
            chunks[node] = chunk
        for node, chunk in chunks.items():
            self._send_tests(node, chunk)
        for node in self.nodes:
            if not self._pending_for(node):
                self._shutdown(node)

    def check_schedule(self, node: WorkerController, duration: float = 0) -> None:
        """Refill ``node`` when it runs low; stop it when nothing left is for its board."""
        if node.shutting_down or self.collection is None:
            return
        mine = self._pending_for(node)
        if not mine:
            self._shutdown(node)
            return
        share = self._share_count(node, mine)
        low = max(2, len(mine) // share // 4)
        high = max(2, len(mine) // share // 2)
        queued = self.node2pending[node]
        if len(queued) < low:
            if duration >= 0.1 and len(queued) >= 2:
                return  # long tests: what it has keeps it busy
            assert self.maxschedchunk is not None
            room = max(2 - len(queued), self.maxschedchunk)
            self._send_tests(node, min(high - len(queued), room))

    def mark_test_complete(
        self, node: WorkerController, item_index: int, duration: float = 0
    ) -> None:
        """``node`` finished the test at ``item_index`` of its own collection."""
        nodeid = self.node2collection[node][item_index]
        self.node2pending[node].remove(self._index[nodeid])
        self.check_schedule(node, duration=duration)

    def mark_test_pending(self, item: str) -> None:
        """Run ``item`` again (pytest-rerunfailures and the like)."""
        self.pending.insert(0, self._index[item])
        self._changed()
        for node in self.nodes:
            self.check_schedule(node)

    def remove_pending_tests_from_node(
        self, node: WorkerController, indices: Sequence[int]
    ) -> None:
        """Only work stealing asks for this; this scheduler never steals."""
        raise NotImplementedError

    # -- helpers ------------------------------------------------------------------------------

    def _eligible(self, index: int) -> list[WorkerController]:
        return [
            n
            for n, held in self.node2globals.items()
            if index in held and n in self.node2pending and not n.shutting_down
        ]

    def _changed(self) -> None:
        """``pending`` or the workers' collections changed: what was cached is stale."""
        self._mine.clear()
        self._share.clear()

    def _pending_for(self, node: WorkerController) -> list[int]:
        """The unsent tests ``node`` can run, in collection order (not to be changed)."""
        mine = self._mine.get(node)
        if mine is None:
            held = self.node2globals.get(node, set())
            mine = self._mine[node] = [i for i in self.pending if i in held]
        return mine

    def _share_count(self, node: WorkerController, mine: list[int]) -> int:
        """How many live workers share ``node``'s pending tests (at least 1)."""
        live = tuple(n for n in self.node2globals if n in self.node2pending and not n.shutting_down)
        cached = self._share.get(node)
        if cached is not None and cached[0] == live:
            return cached[1]
        count = max(1, len(self._sharing(mine)))
        self._share[node] = (live, count)
        return count

    def _sharing(self, tests: list[int]) -> set[WorkerController]:
        """The workers that can run any of ``tests`` (to size a worker's share)."""
        out: set[WorkerController] = set()
        live = sum(1 for n in self.node2globals if n in self.node2pending and not n.shutting_down)
        for i in tests:
            out.update(self._eligible(i))
            if len(out) >= live:
                break  # every worker already shares them (it ran once per finished test)
        return out

    def _send_tests(self, node: WorkerController, num: int) -> None:
        """Send ``num`` tests to ``node``: first those only it can run, then shared ones."""
        if num <= 0:
            return
        mine = self._pending_for(node)
        chosen: set[int] = set()
        for i in mine:  # first those only it can run
            if len(chosen) >= num:
                break
            if len(self._eligible(i)) == 1:
                chosen.add(i)
        for i in mine:
            if len(chosen) >= num:
                break
            chosen.add(i)
        picked = [i for i in mine if i in chosen]  # keep collection order on the worker
        if not picked:
            return
        self.pending = [i for i in self.pending if i not in chosen]
        self._changed()
        self.node2pending[node].extend(picked)
        assert self.collection is not None
        local = self.node2local[node]
        node.send_runtest_some([local[self.collection[i]] for i in picked])

    def _shutdown(self, node: WorkerController) -> None:
        if not node.shutting_down:
            node.shutdown()
