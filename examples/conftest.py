"""Shared fixtures of the example firmware suite.

The plugin gives every test three fixtures (``device_session_manager``,
``device_capabilities``, ``device_session``) and four markers (``requires_feature``,
``requires_platform``, ``requires_firmware``, ``mp_reset``). This file adds what a project
typically adds on top: a project feature and a benchmark fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def pytest_mpsession_probe_features(probes: Any) -> None:
    """Project features, usable in ``@pytest.mark.requires_feature``.

    ``emulator``: the built-in emulator's registry of fake peripherals (``_mpmock``), which lets
    a test drive input pins and read back what the firmware did to its outputs. On real
    hardware the tests that need it are skipped. ``large_heap``: more than 64 KB free.
    ``full_str``: ``str.encode``, ``bytes.decode`` and ``str.partition``.
    """
    probes.add("emulator", "import _mpmock")
    # A feature found by behaviour, not by import: room for file transfers and benchmarks,
    # which a 16 KB board (a micro:bit) does not have.
    probes.add("large_heap", "import gc\ngc.collect()\nassert gc.mem_free() > 64 * 1024")
    # str.encode/bytes.decode and str.partition: left out of the smallest builds (the BBC
    # micro:bit's MicroPython 1.9.2 has neither).
    probes.add("full_str", "'a'.encode()\nb'a'.decode()\n'a b'.partition(' ')")


@pytest.fixture
def device_benchmark(benchmark: Any, device_session: Any) -> Callable[..., Any]:
    """Time a piece of board code with pytest-benchmark.

    ``device_benchmark(code, setup=None, rounds=20)`` runs ``setup`` once, then times
    ``code`` as the test sees it (send, run, reply: what a call costs over this link), and
    stores the board's own run time, without the link, in the benchmark's ``extra_info``
    (``board_us``; shown by ``--benchmark-json`` and ``--benchmark-columns``).
    """

    def run(code: str, setup: str | None = None, rounds: int = 20) -> str:
        if setup:
            device_session.exec(setup)
        # On the board: the same code timed by its own clock, to tell link from CPU.
        timed = (
            "import time\n_t0 = time.ticks_us()\n"
            + code
            + "\n_board_us = time.ticks_diff(time.ticks_us(), _t0)"
        )
        device_session.exec(timed)
        benchmark.extra_info["board_us"] = device_session.eval("_board_us")
        out: str = benchmark.pedantic(
            device_session.exec, args=(code,), rounds=rounds, iterations=1, warmup_rounds=1
        )
        return out

    return run
