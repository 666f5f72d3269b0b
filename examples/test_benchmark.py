"""Benchmarks on the board with pytest-benchmark: ``device_benchmark(code, setup=None)``
times ``code`` by the board's own clock (``time.ticks_us``), round after round, and returns
what it printed; the serial link is not in the figures (its round trip is in the
benchmark's ``extra_info``). ``pytest --mp-mock examples/test_benchmark.py`` prints the
table; ``--benchmark-disable`` runs each once, as a plain test. ``test_perf_bench.py`` does
the same for kernels in the layout of MicroPython's ``tests/perf_bench``."""

from __future__ import annotations

import pytest


def test_sum_of_a_range(device_benchmark):
    # what the code printed, exactly: old boards (a micro:bit) end lines with "\r\n"
    assert device_benchmark("print(sum(range(1000)))").rstrip("\r\n") == "499500"


@pytest.mark.requires_feature("large_heap")  # 200 strings and a list: 7 KB on a 16 KB board
def test_string_building(device_benchmark):
    out = device_benchmark("print(len(''.join([str(i) for i in range(200)])))")
    assert out == "490\n"


@pytest.mark.requires_feature("native")
def test_native_emitter_loop(device_benchmark):
    setup = """
import micropython

@micropython.native
def checksum(data):
    total = 0
    for b in data:
        total = (total + b) & 0xFFFF
    return total

payload = bytes(range(256)) * 8
"""
    expected = sum(range(256)) * 8 & 0xFFFF
    assert device_benchmark("print(checksum(payload))", setup=setup) == f"{expected}\n"
