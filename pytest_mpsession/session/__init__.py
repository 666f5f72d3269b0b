"""The session core: the manager, sessions, their contexts and resources (no pytest here).

See ``docs/ARCHITECTURE.md``; the public names are re-exported by ``pytest_mpsession``.
"""

from __future__ import annotations

from pytest_mpsession.session.contexts import (
    BackgroundThread,
    DeviceContext,
    ExecutorContext,
    FileInfo,
    FileSystemContext,
    MethodDeploymentInfo,
    RemoteObject,
)
from pytest_mpsession.session.errors import (
    BackgroundThreadError,
    ResourceCleanupError,
    StateTransitionError,
)
from pytest_mpsession.session.manager import DeviceSessionManager
from pytest_mpsession.session.resources import ResourceState, SessionResource
from pytest_mpsession.session.session import CleanupPolicy, DeviceSession
from pytest_mpsession.session.states import TRANSITIONS, SessionState

__all__ = [
    "TRANSITIONS",
    "BackgroundThread",
    "BackgroundThreadError",
    "CleanupPolicy",
    "DeviceContext",
    "DeviceSession",
    "DeviceSessionManager",
    "ExecutorContext",
    "FileInfo",
    "FileSystemContext",
    "MethodDeploymentInfo",
    "RemoteObject",
    "ResourceCleanupError",
    "ResourceState",
    "SessionResource",
    "SessionState",
    "StateTransitionError",
]
