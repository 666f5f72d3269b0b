# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The unit-test exchanges of the board-test runner (see _mpbt.py). Only "runner" stays on
# the board (_mpbt_t, sent once per board life); every other section, after a line
# "#@ NAME", is the code of one raw-REPL exchange, with
# _K_ (the file key), _M_ (module name), _U_ (the unittest to give it: _mpbt_ut, or None),
# _C_ (class name or None), _T_ (test name) and _A_ (1: run setUpClass first) filled in by
# the host. A 16 KB board keeps only the RAM of the test module itself.
#
# The module is sent as it is, as the code of an exchange of its own (its source is never
# copied into a string: the board compiles it straight from the REPL's buffer), or, when it
# may raise SystemExit at its top level (a board resets on that), by load_literal; between
# "prepare" and "finish": its names are the REPL's globals while its tests run, and "drop"
# removes them afterwards. Where the board has no unittest, the host has rewritten the
# module's "import unittest" lines to take the shim (_mpbt_ut) instead (1.9 on a micro:bit
# has no sys.modules to put it in). The module loads with __name__ = its name, so its unittest.main()
# does not run. "test" prints _mpbt_r(0) passed, _mpbt_r(('s', reason)) skipped or
# _mpbt_r(('x',)) for a SystemExit; a failure is the test's own exception.
#@ prepare
_mpbt_u[_K_]=[list(globals()),_U_,_mpbt_s()]
globals()['__name__']=_M_
#@ finish
globals()['__name__']='__main__'
_mpbt_g=_mpbt_u[_K_]
_mpbt_z(_mpbt_g[2])
_mpbt_g[0]=[n for n in globals() if n not in _mpbt_g[0]]
if not _mpbt_g[1]:
 _mpbt_g[1]=__import__('unittest')
_mpbt_g[2]=_mpbt_g=None
#@ runner
def _mpbt_t(k,c,t,a):
 n=globals()
 u=_mpbt_u[k][1]
 g=_mpbt_s()
 try:
  if c is None:
   n[t]()
  else:
   c=n[c]
   r=getattr(c,'__unittest_skip__',None)
   if r is not None:
    raise u.SkipTest(r)
   if a:
    c.setUpClass()
   c=c()
   c.setUp()
   try:
    getattr(c,t)()
   finally:
    c.tearDown()
  _mpbt_r(0)
 except SystemExit:
  _mpbt_r(('x',))
 except Exception as e:
  if not u or not isinstance(e,u.SkipTest):
   raise
  _mpbt_r(('s',e.args[0] if e.args else ''))
 finally:
  _mpbt_z(g)
#@ test
_mpbt_t(_K_,_C_,_T_,_A_)
#@ load_literal
try:
 exec(_S_,globals())
except SystemExit:
 _mpbt_r(('x',))
#@ teardown_class
globals()[_C_].tearDownClass()
#@ drop
for _mpbt_g in _mpbt_u.pop(_K_,[()])[0]:
 globals().pop(_mpbt_g,None)
_mpbt_g=None
__import__('gc').collect()
