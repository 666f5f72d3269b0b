"""The emulated board: the real MicroPython unix port behind an emulated board.

Public names: :func:`find_engine`, :func:`load_profile`, :class:`Profile`,
:class:`PtyBoard`, :class:`EmulatorError`.  Importing this package registers the
``mpmock://`` URL scheme with pyserial (``serial.protocol_handler_packages``).
"""

from __future__ import annotations

import serial

from pytest_mpsession.emulator.engine import EmulatorError, find_engine
from pytest_mpsession.emulator.profiles import BUILTIN_PROFILES, Profile, load_profile
from pytest_mpsession.emulator.pty_board import PtyBoard

__all__ = [
    "BUILTIN_PROFILES",
    "EmulatorError",
    "Profile",
    "PtyBoard",
    "find_engine",
    "load_profile",
]

# pyserial imports `<package>.protocol_<scheme>` for `scheme://` URLs.
if "pytest_mpsession.urlhandler" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("pytest_mpsession.urlhandler")
