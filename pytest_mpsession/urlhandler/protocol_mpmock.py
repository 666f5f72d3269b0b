"""pyserial URL handler for ``mpmock://`` (a thin shim onto the emulator).

URL format: ``mpmock://[PROFILE][?option=value[&option=value...]]`` — see
:mod:`pytest_mpsession.emulator.serial_mpmock`.
"""

from __future__ import annotations

from pytest_mpsession.emulator.serial_mpmock import Serial

__all__ = ["Serial"]
