"""What a test asks of a board, and whether a board meets it.

One function reads a test's requirements, whatever kind of item it is: the
``requires_feature`` / ``requires_platform`` / ``requires_firmware`` markers of a host test,
and the same markers that a board test file's module-level ``requires_*`` assignments become
on its items. The plugin's skip at collection, the routing of a pool and the matrix all ask
:func:`unmet` and nothing else, so they can never disagree about a board.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities

__all__ = [
    "BOARD_INDEX",
    "BOARD_MARKERS",
    "ROUTED",
    "Requirements",
    "item_requirements",
    "none_can_run",
    "unmet",
]

#: the markers that say what a test needs of its board
BOARD_MARKERS = ("requires_feature", "requires_platform", "requires_firmware")
#: set on a test whose board (and skip) a pool's routing decided: the plugin's own skip at
#: collection, which knows only this process's board, leaves it alone
ROUTED = pytest.StashKey[bool]()
#: the pool board an item of the matrix is for (``--mp-dist each``), for items that are not
#: parametrized functions: a collector that makes one item per board (see
#: :func:`pytest_mpsession.farm.hooks.matrix_boards`) sets it on each
BOARD_INDEX = pytest.StashKey[int]()


@dataclass(frozen=True)
class Requirements:
    """A test's needs: every feature, one of the platforms (each marker), every firmware spec."""

    features: tuple[str, ...] = ()
    #: one tuple per ``requires_platform`` marker: the board's platform is in each
    platforms: tuple[tuple[str, ...], ...] = ()
    firmware: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.features or self.platforms or self.firmware)


def item_requirements(item: pytest.Item) -> Requirements:
    """The requirements of ``item``, from its ``requires_*`` markers (closest first)."""
    features: list[str] = []
    platforms: list[tuple[str, ...]] = []
    firmware: list[str] = []
    for mark in item.iter_markers(name="requires_feature"):
        features.extend(str(a) for a in mark.args if str(a) not in features)
    for mark in item.iter_markers(name="requires_platform"):
        platforms.append(tuple(str(a) for a in mark.args))
    for mark in item.iter_markers(name="requires_firmware"):
        firmware.extend(str(a) for a in mark.args)
    return Requirements(tuple(features), tuple(platforms), tuple(firmware))


def unmet(reqs: Requirements, caps: DeviceCapabilities) -> str | None:
    """Why a board with ``caps`` cannot run a test needing ``reqs`` (``None``: it can).

    ``requires_feature: board lacks 'threading' (micropython 1.9.2 on microbit)``.
    """
    from pytest_mpsession.capabilities import FirmwareSpec

    what = f"({caps.describe()})"
    missing = [f for f in reqs.features if not caps.supports_feature(f)]
    if missing:
        return f"requires_feature: board lacks {', '.join(repr(m) for m in missing)} {what}"
    for wanted in reqs.platforms:
        if caps.device_type not in wanted:
            names = ", ".join(repr(p) for p in wanted)
            return f"requires_platform: board is {caps.device_type!r}, not {names} {what}"
    for spec in reqs.firmware:
        if not FirmwareSpec(spec).matches(caps.version):
            return f"requires_firmware: board has {caps.firmware_version}, not {spec!r} {what}"
    return None


def none_can_run(reqs: Requirements, boards: Sequence[tuple[str, DeviceCapabilities]]) -> str:
    """The skip reason of a test that no board of the pool can run, naming every board:
    ``no board of the pool can run it: esp32@mpmock://esp32: requires_platform: ...; ...``."""
    parts = []
    for label, caps in boards:
        why = unmet(reqs, caps) or "can run it"
        parts.append(f"{label}: {why}")
    return "no board of the pool can run it: " + "; ".join(parts)
