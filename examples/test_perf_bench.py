"""Benchmarks in the layout of MicroPython's own ``tests/perf_bench``, timed by the board's
clock with ``device_benchmark``.

Each ``perf/bm_*.py`` defines ``bm_params`` (``(CPU MHz, heap KiB)`` -> arguments) and
``bm_setup(params)`` (-> the function to time, and a function giving ``(count, result)``), as
MicroPython's perf_bench files do. The file is sent to the board once, ``bm_setup`` is the
benchmark's setup with the params of the largest key the board fits (half its free heap, a
100 MHz class), and the result is checked against CPython running the same file on the host.

``pytest --mp-mock examples/test_perf_bench.py`` prints the table;
``--benchmark-autosave`` then ``--benchmark-compare --benchmark-compare-fail=median:10%``
after flashing new firmware fails the run when a kernel got slower.
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

KERNELS = sorted((Path(__file__).parent / "perf").glob("bm_*.py"))

#: run-perfbench.py's N: the CPU class (MHz) the params are chosen for
MHZ = 100
#: the share of the board's free heap a kernel may take (the rest is for the rounds' exchanges)
HEAP_SHARE = 0.5

pytestmark = [
    pytest.mark.benchmark(group="perf_bench"),
    # A kernel file is compiled on the board as it arrives: a 16 KB board (a 1.9-era
    # micro:bit, the emulator's legacy profile) has too little heap for that, as it has for
    # MicroPython's own perf_bench; ``test_benchmark.py`` runs there.
    pytest.mark.requires_feature("large_heap"),
]


def params_for(bm_params: dict, heap_kib: int) -> tuple | None:
    """The arguments of the largest (MHz, heap KiB) key within MHZ and the board's heap."""
    fitting = [key for key in bm_params if key[0] <= MHZ and key[1] <= heap_kib]
    return bm_params[max(fitting)] if fitting else None


def without_comments(source: str) -> str:
    """``source`` with its comment lines blank."""
    return "\n".join("" if line.lstrip().startswith("#") else line for line in source.split("\n"))


@pytest.mark.parametrize("kernel", KERNELS, ids=lambda path: path.stem)
def test_perf_bench(kernel, device_benchmark, device_session, device_capabilities):
    host = runpy.run_path(str(kernel))  # CPython: the expected result, and the params table
    heap_kib = int((device_capabilities.memory_free or 0) * HEAP_SHARE) // 1024
    params = params_for(host["bm_params"], heap_kib)
    if params is None:
        pytest.skip(f"{kernel.name}: no params for a board with {heap_kib} KiB free")
    run, result = host["bm_setup"](params)
    run()
    # The kernel in an exchange of its own, without its comments (blank lines keep the line
    # numbers): less for the board to compile at once.
    device_session.exec(without_comments(kernel.read_text()))
    device_benchmark.extra_info["params"] = list(params)
    device_benchmark("_bm_run()", setup=f"_bm_run, _bm_result = bm_setup({params!r})")
    assert device_session.eval("_bm_result()") == result()
