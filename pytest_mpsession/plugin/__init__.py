"""pytest-mpsession's pytest plugin: the ``pytest11`` entry point ``pytest_mpsession.plugin``.

This module only registers: the ``pytest_mpsession_*`` hookspecs, and, through
``pytest_plugins``, the modules that hold the plugin's hooks and fixtures, each a pytest
plugin of its own (so ``pytest --fixtures`` names the module a fixture comes from, and
``-p no:pytest_mpsession.plugin.reports`` would switch one off):

=========================  ===========================================================
``plugin.options``         the option group, ini keys, env vars: one resolved ``Settings``
``plugin.boards``          this process's board: port choice (xdist pool), connect, probe
``plugin.markers``         marker registration, checks at collection, skips
``plugin.recovery``        around each device test: resync, fault noted, one recovery
``plugin.reports``         header, JUnit properties, board tracebacks, terminal summary
``plugin.fixtures``        ``device_session_manager``, ``device_capabilities``,
                           ``device_session``
``plugin.benchmark``       ``device_benchmark``, the board in pytest-benchmark's machine
                           info
``boardtests.plugin``      tests that run on the board: ``--mp-board-tests``, collection
=========================  ===========================================================

The run's state is in ``config.stash`` (:mod:`pytest_mpsession.plugin.state`).

**Adding a module.** A feature with hooks or fixtures of its own (the board-test collector,
farm routing) lives in a module of its own and is listed in ``pytest_plugins`` below, which
is the one list of the plugin's modules. pytest imports and registers them in this order
when it loads this entry point (also under ``-p pytest_mpsession.plugin`` and in
pytest-xdist workers); ``-p no:mpsession`` switches all of them off. Everything in this
package is loaded by every pytest run in an environment where the package is installed, so
a module imports what is heavy inside its hooks, and does nothing unless a board is
configured or its option is given.
"""

from __future__ import annotations

import pytest

#: The plugin's modules, registered by pytest in this order (``options`` first: its
#: ``pytest_addoption`` creates the option group the others add to).
pytest_plugins = [
    "pytest_mpsession.plugin.options",
    "pytest_mpsession.plugin.boards",
    "pytest_mpsession.plugin.markers",
    "pytest_mpsession.plugin.recovery",
    "pytest_mpsession.plugin.reports",
    "pytest_mpsession.plugin.fixtures",
    "pytest_mpsession.plugin.benchmark",
    "pytest_mpsession.boardtests.plugin",
    "pytest_mpsession.farm.hooks",
]


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Register the ``pytest_mpsession_*`` hookspecs."""
    from pytest_mpsession import hookspecs

    pluginmanager.add_hookspecs(hookspecs)
