# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The board-side runner of board tests, written for MicroPython 1.9 and 16 KB of RAM: no
# f-strings, no type.__name__, one-space indentation, small functions (each top-level
# statement is compiled in one piece of the board's RAM). The host sends it in pieces, once
# per board life (again after a reset). Every name starts with _mpbt.
#
# _mpbt_s()      (_mpbt_iso.py) a snapshot of what a test may change: sys.path, sys.modules, the files of
#                the current folder, the current folder, micropython.opt_level()
# _mpbt_z(g)     (_mpbt_iso.py) puts all of that back after the test (and the builtins: _mpbt_bc, sent
#                separately by _mpbt_builtins.py to boards with the RAM for it)
# _mpbt_out.py and _mpbt_unit.py (sent after this file, each only to a board that runs such
# tests, so a 16 KB board keeps the RAM of what it does not run):
# _mpbt_o(s)     runs output test source s as a script (__name__ '__main__'); SystemExit
#                ends it; any other exception goes to the raw REPL (stderr), after _mpbt_z
# _mpbt_l(k,s,m,u) runs unit-test module source s as module m, kept as file key k; u is the
#                unittest module to give it (the shim _mpbt_ut when the board has none);
#                prints _mpbt_r(1) loaded, or _mpbt_r(('x',)) when the module raised
#                SystemExit (how MicroPython's tests skip: what it printed says why)
# _mpbt_t(k,c,t,a) runs test t (of class c, or a function when c is None) of file k; a: run
#                setUpClass first; prints _mpbt_r(0) passed, _mpbt_r(('s', reason)) skipped
#                or _mpbt_r(('x',)) for a SystemExit; a failure is the test's own exception,
#                with its traceback
# _mpbt_k(k,c)   tearDownClass of class c of file k
# _mpbt_r(v)     the result: the marker \x1e, then repr(v)
import sys
_mpbt_u={}
_mpbt_bc=None
def _mpbt_r(v):
 print('\x1e'+repr(v))
