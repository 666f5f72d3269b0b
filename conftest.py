"""Root conftest of the pytest-mpsession repository (its own test suite and the examples).

The plugin itself arrives through its ``pytest11`` entry point, exactly as a user gets it;
this file only enables pytest's ``pytester`` fixture for the plugin's own tests.
"""

pytest_plugins = ["pytester"]
