# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The board-side runner of board tests, written for MicroPython 1.9 and 16 KB of RAM: no
# f-strings, no type.__name__, one-space indentation. The host sends it in small pieces, once
# per board life (again after a reset). Every name starts with _mpbt.
#
# _mpbt_s()      a snapshot of what a test may change: sys.path, sys.modules, the current
#                folder and its files, micropython.opt_level(); taken before each test
# _mpbt_z(g)     puts all of that back after the test (and the builtins, see _mpbt_bc)
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
import builtins
_mpbt_u={}
_mpbt_bn=[n for n in dir(builtins) if n not in ('__class__','__dict__','__name__')]
exec('_mpbt_bc=lambda:('+','.join(_mpbt_bn)+',)')
_mpbt_b0=_mpbt_bc()
def _mpbt_r(v):
 print('\x1e'+repr(v))
def _mpbt_s():
 g=[sys,list(sys.path),list(sys.modules),None,None,None,None,None]
 try:
  import os
  g[3]=os
  try:
   g[4]=os.getcwd()
  except Exception:
   pass
  try:
   g[5]=os.listdir()
  except Exception:
   pass
 except ImportError:
  pass
 try:
  import micropython
  g[6]=micropython
  g[7]=micropython.opt_level()
 except Exception:
  pass
 return g
def _mpbt_z(g):
 c=_mpbt_bc()
 i=0
 for n in _mpbt_bn:
  if c[i] is not _mpbt_b0[i]:
   try:
    delattr(builtins,n)
   except Exception:
    setattr(builtins,n,_mpbt_b0[i])
  i+=1
 s=g[0]
 p=s.path
 while len(p):
  p.pop()
 for x in g[1]:
  p.append(x)
 m=s.modules
 for k in list(m):
  if k not in g[2]:
   m.pop(k)
 o=g[3]
 if o is not None:
  try:
   if g[4] is not None and o.getcwd()!=g[4]:
    o.chdir(g[4])
  except Exception:
   pass
  if g[5] is not None:
   try:
    for f in o.listdir():
     if f not in g[5]:
      try:
       o.remove(f)
      except OSError:
       try:
        o.rmdir(f)
       except Exception:
        pass
   except Exception:
    pass
 if g[7] is not None:
  try:
   g[6].opt_level(g[7])
  except Exception:
   pass
def _mpbt_o(s):
 g=_mpbt_s()
 try:
  exec(s,{'__name__':'__main__'})
 except SystemExit:
  pass
 finally:
  _mpbt_z(g)
def _mpbt_l(k,s,m,u):
 g=_mpbt_s()
 n={'__name__':m}
 if u is not None:
  sys.modules['unittest']=u
 try:
  exec(s,n)
 except SystemExit:
  _mpbt_r(('x',))
  return
 finally:
  if u is not None:
   sys.modules.pop('unittest',None)
  _mpbt_z(g)
 if u is None:
  u=sys.modules.get('unittest')
 _mpbt_u[k]=(n,u)
 _mpbt_r(1)
def _mpbt_t(k,c,t,a):
 n,u=_mpbt_u[k]
 S=()
 if u is not None:
  S=u.SkipTest
 g=_mpbt_s()
 try:
  if c is None:
   n[t]()
  else:
   K=n[c]
   r=getattr(K,'__unittest_skip__',None)
   if r is not None:
    _mpbt_r(('s',r))
    return
   if a:
    K.setUpClass()
   o=K()
   o.setUp()
   try:
    getattr(o,t)()
   finally:
    o.tearDown()
  _mpbt_r(0)
 except S as e:
  _mpbt_r(('s',e.args[0] if e.args else ''))
 except SystemExit:
  _mpbt_r(('x',))
 finally:
  _mpbt_z(g)
def _mpbt_k(k,c):
 g=_mpbt_s()
 try:
  _mpbt_u[k][0][c].tearDownClass()
 finally:
  _mpbt_z(g)
