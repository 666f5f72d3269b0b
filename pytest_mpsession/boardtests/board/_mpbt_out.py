# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The output-test part of the board-test runner (see _mpbt.py).
def _mpbt_o(s):
 g=_mpbt_s()
 try:
  exec(s,{'__name__':'__main__'})
 except SystemExit:
  pass
 finally:
  _mpbt_z(g)
