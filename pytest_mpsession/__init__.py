"""pytest-mpsession: managed sessions on MicroPython boards, real or emulated."""

from __future__ import annotations

from pytest_mpsession.errors import (
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    MpSessionError,
    ProtocolError,
)

__all__ = [
    "DeviceConnectionError",
    "DeviceError",
    "DeviceTimeout",
    "MpSessionError",
    "ProtocolError",
]
