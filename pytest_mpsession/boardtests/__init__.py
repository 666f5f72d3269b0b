"""Tests that run on the board: MicroPython's output tests and unit-test modules as items.

- :mod:`.source`: reading a board test file on the host (kind, tests, requirements);
- :mod:`.mprules`: run-tests.py's verdict rules (normalisation, skips, regex outputs);
- :mod:`.expected`: the expected output (``.exp`` or CPython's, cached);
- :mod:`.runner`: running files on a board (the board side is ``board/_mpbt.py`` and the
  unittest shim ``board/_unittest.py``, package data);
- :mod:`.items`: the pytest nodes; :mod:`.plugin`: the option, ini key and collection hooks.
"""
