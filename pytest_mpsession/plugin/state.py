"""The plugin's per-run state, kept in ``config.stash`` (never in module globals: pytester
runs many configs in one process).

Every module of the plugin reads it through :func:`get_state`; a module added to the plugin
(see ``plugin/__init__.py``) does the same. The settings are resolved and the state created
in :func:`pytest_mpsession.plugin.options.pytest_configure`, before any other hook of the
plugin needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import FeatureProbes
    from pytest_mpsession.plugin.boards import Board
    from pytest_mpsession.plugin.options import Settings

__all__ = ["CALL_REPORT", "STATE", "PluginState", "get_state"]


@dataclass
class PluginState:
    """What the plugin knows in this process: its settings, its board, what went wrong."""

    settings: Settings
    probes: FeatureProbes | None = None
    board: Board | None = None
    #: the boards were opened (or tried): once per run, see ``boards.prepare_boards``
    prepared: bool = False
    #: per-worker board descriptions collected by the xdist controller
    worker_boards: dict[str, dict[str, str]] = field(default_factory=dict)
    #: the board failed and did not come back during this test: (test id, reason); the
    #: next device test tries one recovery first
    fault: tuple[str, str] | None = None
    #: the recovery after ``fault`` failed: every later device test skips with this reason
    broken: str | None = None
    #: device tests skipped because of ``broken``
    broken_skips: int = 0
    #: the xdist controller: per worker, (broken reason, tests skipped for it)
    worker_broken: dict[str, tuple[str, int]] = field(default_factory=dict)


STATE = pytest.StashKey[PluginState]()
#: each test's call-phase report (the ``device_session`` teardown needs to know how it went)
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


def get_state(config: pytest.Config) -> PluginState | None:
    """The plugin's state, or ``None`` before ``pytest_configure`` (or when it failed)."""
    return config.stash.get(STATE, None)
