# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# The board around the interpreter, run by the unix port (-i) before its REPL starts.
# The relay prepends `_CFG = {...}` (the profile and this board's identity) to this file.
# Everything happens inside a function and is deleted at the end, so the REPL's globals are
# as empty as a board's.


def _mpmock_boot(cfg):
    import sys
    import micropython

    # The unix port starts with its SIGINT handler installed; a board's Ctrl-C is only
    # active while code runs.  Without a handler at the prompt the relay can tell from
    # /proc whether a SIGINT would interrupt code (it is sent only then).
    micropython.kbd_intr(-1)
    ctl = int(sys.argv[1])
    cause = int(sys.argv[2])
    sys.argv[:] = []
    if not cfg["disguise"]:
        # the bare unix port, as started at its REPL: the current folder first in the path
        sys.path[0] = ""
        return
    import os

    os.chdir(cfg["board_dir"])
    sys.path[:] = [""]
    import _mpmock_board

    _mpmock_board.setup(cfg, ctl, cause)


_mpmock_boot(_CFG)
del _mpmock_boot, _CFG, __file__
