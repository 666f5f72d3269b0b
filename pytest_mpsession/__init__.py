"""pytest-mpsession: managed sessions on MicroPython boards, real or emulated.

The names here are the public API (``../shared/API.md`` of the project); everything else
lives in private-by-convention modules below and may change.
"""

from __future__ import annotations

import serial as _serial

from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes, PerformanceProfile
from pytest_mpsession.errors import (
    BoardBrokenError,
    BoardBusyError,
    BoardDisconnectedError,
    BoardFault,
    BoardHungError,
    BoardNoiseError,
    BoardResetError,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeout,
    MpSessionError,
    ProtocolError,
)
from pytest_mpsession.session import (
    BackgroundThreadError,
    CleanupPolicy,
    DeviceContext,
    DeviceSession,
    DeviceSessionManager,
    ExecutorContext,
    FileSystemContext,
    MethodDeploymentInfo,
    ResourceCleanupError,
    ResourceState,
    SessionResource,
    SessionState,
    StateTransitionError,
)

__all__ = [
    "BackgroundThreadError",
    "BoardBrokenError",
    "BoardBusyError",
    "BoardDisconnectedError",
    "BoardFault",
    "BoardHungError",
    "BoardNoiseError",
    "BoardResetError",
    "CleanupPolicy",
    "DeviceCapabilities",
    "DeviceConnectionError",
    "DeviceContext",
    "DeviceError",
    "DeviceSession",
    "DeviceSessionManager",
    "DeviceTimeout",
    "ExecutorContext",
    "FeatureProbes",
    "FileSystemContext",
    "MethodDeploymentInfo",
    "MpSessionError",
    "PerformanceProfile",
    "ProtocolError",
    "ResourceCleanupError",
    "ResourceState",
    "SessionResource",
    "SessionState",
    "StateTransitionError",
]

# `mpmock://` URLs: pyserial imports `<package>.protocol_<scheme>` from these packages, so
# `import pytest_mpsession` is all a `serial_for_url("mpmock://...")` caller needs.
if "pytest_mpsession.urlhandler" not in _serial.protocol_handler_packages:
    _serial.protocol_handler_packages.append("pytest_mpsession.urlhandler")
