"""Shared fixtures of the example firmware suite.

The plugin gives every test three fixtures (``device_session_manager``,
``device_capabilities``, ``device_session``) and four markers (``requires_feature``,
``requires_platform``, ``requires_firmware``, ``mp_reset``). This file adds what a project
typically adds on top: project features. (``device_benchmark``, for benchmarks timed by the
board's own clock, comes with the plugin.)
"""

from __future__ import annotations

from typing import Any


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
