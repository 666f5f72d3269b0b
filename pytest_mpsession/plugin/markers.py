"""The markers: their registration, their checks at collection (a bad one is a usage error,
with or without a board), and the skips they decide on this process's board.

``requires_*`` skips are decided at collection (the board was opened at session start), so
pytest reports them at the test's own location, like its own skip marks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_mpsession.farm.requirements import ROUTED
from pytest_mpsession.plugin.boards import NO_BOARD_REASON, feature_probes, late_probes
from pytest_mpsession.plugin.options import RESET_POLICIES
from pytest_mpsession.plugin.state import get_state

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities

__all__ = [
    "BOARD_MARKERS",
    "DEVICE_FIXTURES",
    "MARKERS",
    "check_markers",
    "skip_reason",
    "uses_board",
]

DEVICE_FIXTURES = frozenset({"device_session_manager", "device_capabilities", "device_session"})
BOARD_MARKERS = ("requires_feature", "requires_platform", "requires_firmware")

MARKERS = (
    "requires_feature(*features): skip the test unless the board has every one of these "
    "features (threading, asyncio, float, ... or a project's own from mp_features)",
    "requires_platform(*platforms): skip the test unless the board's sys.platform is one of "
    "these (esp32, rp2, ...)",
    "requires_firmware(*specs): skip the test unless the firmware version matches every "
    "spec ('>=1.20', '>=1.20,<1.23', '==1.22.*')",
    "mp_reset(policy): what device_session does to the board after this test: clean, soft, "
    "hard or none (overrides --mp-reset)",
)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (also with ``--help``: ``--strict-markers`` needs them)."""
    for line in MARKERS:
        config.addinivalue_line("markers", line)


def uses_board(item: pytest.Item) -> bool:
    """Whether ``item`` is a device test (a device fixture or a board marker)."""
    if DEVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    return any(item.get_closest_marker(m) for m in BOARD_MARKERS)


# -- collection: marker checks and skips --------------------------------------------------


def _marker_error(item: pytest.Item, mark: pytest.Mark, message: str) -> pytest.UsageError:
    args = ", ".join([repr(a) for a in mark.args] + [f"{k}={v!r}" for k, v in mark.kwargs.items()])
    return pytest.UsageError(f"mpsession: {item.nodeid}: {mark.name}({args}): {message}")


def check_markers(item: pytest.Item, known: frozenset[str]) -> None:
    """Validate the item's mpsession markers; ``pytest.UsageError`` for a bad one."""
    from pytest_mpsession.capabilities import FirmwareSpec

    for mark in item.iter_markers():
        if mark.name not in (*BOARD_MARKERS, "mp_reset"):
            continue
        if mark.kwargs:
            raise _marker_error(item, mark, "takes no keyword arguments")
        if not mark.args or not all(isinstance(a, str) for a in mark.args):
            raise _marker_error(item, mark, "give one or more names as strings")
        if mark.name == "requires_feature":
            unknown = [a for a in mark.args if a not in known]
            if unknown:
                raise _marker_error(
                    item,
                    mark,
                    f"unknown feature {', '.join(repr(u) for u in unknown)}; known features: "
                    + ", ".join(sorted(known))
                    + " (add your own with the mp_features ini key or the "
                    "pytest_mpsession_probe_features hook)",
                )
        elif mark.name == "requires_firmware":
            for spec in mark.args:
                try:
                    FirmwareSpec(spec)
                except ValueError as exc:
                    raise _marker_error(item, mark, str(exc)) from None
        elif mark.name == "mp_reset":
            if len(mark.args) != 1 or mark.args[0] not in RESET_POLICIES:
                raise _marker_error(
                    item, mark, "give one reset policy: " + ", ".join(RESET_POLICIES)
                )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every mpsession marker is checked at collection, with or without a board."""
    state = get_state(config)
    if state is None:
        return
    from pytest_mpsession.capabilities import KNOWN_FEATURES

    late_probes(config, state)
    known = feature_probes(config).names() | KNOWN_FEATURES
    for item in items:
        check_markers(item, known)
    # Skips are decided now (the board was opened at session start), so pytest reports them
    # at the test's own location, like its own skip marks.
    board = state.board
    caps = board.capabilities if board is not None else None
    for item in items:
        if item.stash.get(ROUTED, False):
            continue  # a pool's routing decided this test's board and skip
        marked = any(item.get_closest_marker(m) for m in BOARD_MARKERS)
        if board is None and state.settings.configured:
            continue  # --collect-only on a configured board: nothing runs
        uses = DEVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
        if board is None:
            if marked or uses:
                item.add_marker(pytest.mark.skip(reason=NO_BOARD_REASON))
        elif board.error is not None:
            if marked and not uses:  # the fixture reports the board's error
                item.add_marker(pytest.mark.usefixtures("device_session_manager"))
        elif marked and caps is not None:
            reason = skip_reason(item, caps)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


def skip_reason(item: pytest.Item, caps: DeviceCapabilities) -> str | None:
    """Why ``item`` cannot run on a board with ``caps`` (None: it can): the one check that
    these skips and a pool's routing share (:mod:`pytest_mpsession.farm.requirements`)."""
    from pytest_mpsession.farm.requirements import item_requirements, unmet

    return unmet(item_requirements(item), caps)
