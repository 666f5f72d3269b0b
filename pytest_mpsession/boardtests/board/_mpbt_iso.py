# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# Isolation between board tests (see _mpbt.py), for boards with the RAM for it: a board
# with less (a 16 KB one) is soft-reset before each board test file instead, and gets
# _mpbt_s=lambda:None and _mpbt_z=lambda g:None.
def _mpbt_s():
 g=[list(sys.path),list(sys.modules),None,None,None,None]
 try:
  import os
  g[2]=os
  g[3]=os.listdir()
  g[4]=os.getcwd()
 except Exception:
  pass
 try:
  import micropython
  g[5]=micropython.opt_level()
 except Exception:
  pass
 return g
def _mpbt_z(g):
 if _mpbt_bc:
  _mpbt_bc()
 p=sys.path
 while p:
  p.pop()
 p.extend(g[0])
 m=sys.modules
 for k in list(m):
  if k not in g[1]:
   m.pop(k)
 o=g[2]
 try:
  if g[4] and o.getcwd()!=g[4]:
   o.chdir(g[4])
  for f in o.listdir():
   if f not in g[3]:
    o.remove(f)
 except Exception:
  pass
 if g[5] is not None:
  import micropython
  micropython.opt_level(g[5])
