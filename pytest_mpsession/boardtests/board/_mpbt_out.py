# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The output-test part of the board-test runner (see _mpbt.py). The names of the runner and
# of the checked-exchange wrapper in __main__ are put back after the test: one deleting them
# leaves the next test its board.
def _mpbt_o(s):
 d=globals()
 k=[(n,d[n]) for n in d if n[:3]=='_mp' or n in ('__mpsession_up','sys')]
 z=_mpbt_z
 g=_mpbt_s()
 try:
  exec(s,{'__name__':'__main__'})
 except SystemExit:
  pass
 finally:
  for n,v in k:
   d[n]=v
  z(g)
