"""The hooks pytest-mpsession calls, for a project's ``conftest.py`` (or a plugin) to implement.

They are registered by the plugin through ``pytest_addhooks``. Every hook is a notification:
return values are ignored, and an exception in an implementation fails the run the way any
pytest hook error does. Implement only the arguments you need (pluggy passes them by name).

.. versionadded:: 0.1
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_mpsession.capabilities import DeviceCapabilities, FeatureProbes
    from pytest_mpsession.session.manager import DeviceSessionManager
    from pytest_mpsession.session.session import DeviceSession
    from pytest_mpsession.session.states import SessionState

__all__ = [
    "pytest_mpsession_capabilities",
    "pytest_mpsession_probe_features",
    "pytest_mpsession_session_finish",
    "pytest_mpsession_session_start",
    "pytest_mpsession_state_changed",
]


@pytest.hookspec
def pytest_mpsession_probe_features(probes: FeatureProbes) -> None:
    """Add feature probes before the board is probed.

    A probe is board code; the board has the feature when it runs without raising. The
    names added here can be used in ``@pytest.mark.requires_feature`` (an unknown name is a
    collection error), alongside the built-in ones and those of the ``mp_features`` ini key.
    Called once per run (per worker under pytest-xdist), before any board is opened.

    .. code-block:: python

        # conftest.py
        def pytest_mpsession_probe_features(probes):
            probes.add("lora", "import sx127x")
            probes.add("big_heap", "assert __import__('gc').mem_free() > 100000")

    .. versionadded:: 0.1
    """


@pytest.hookspec
def pytest_mpsession_capabilities(capabilities: DeviceCapabilities) -> None:
    """The board's capabilities are known (detected, or read from pytest's cache).

    Called once per board, before the first test that uses it.

    .. code-block:: python

        # conftest.py
        def pytest_mpsession_capabilities(capabilities):
            if capabilities.memory_free is not None and capabilities.memory_free < 20_000:
                import warnings

                warnings.warn(f"only {capabilities.memory_free} bytes free on the board")

    .. versionadded:: 0.1
    """


@pytest.hookspec
def pytest_mpsession_session_start(session: DeviceSession) -> None:
    """A ``device_session`` was created for a test, before the test body runs.

    A good place to set up what every test expects on the board.

    .. code-block:: python

        # conftest.py
        def pytest_mpsession_session_start(session):
            session.exec("import gc; gc.collect()")
            session.set_state("started_free", session.eval("gc.mem_free()"))

    .. versionadded:: 0.1
    """


@pytest.hookspec
def pytest_mpsession_session_finish(session: DeviceSession) -> None:
    """A ``device_session`` is about to be cleaned up after its test (also when the test
    failed or timed out; the board has been interrupted by then).

    .. code-block:: python

        # conftest.py
        def pytest_mpsession_session_finish(session):
            print(f"{session.session_id} took {session.duration.total_seconds():.3f}s")

    .. versionadded:: 0.1
    """


@pytest.hookspec
def pytest_mpsession_state_changed(
    manager: DeviceSessionManager, old: SessionState, new: SessionState
) -> None:
    """The session manager of a board changed state (``connected``, ``busy``,
    ``recovering``, ``error``, ...). Called from whichever thread made the change.

    .. code-block:: python

        # conftest.py
        def pytest_mpsession_state_changed(manager, old, new):
            if new == "recovering":
                print(f"board {manager.session_id}: link lost, recovering")

    .. versionadded:: 0.1
    """
