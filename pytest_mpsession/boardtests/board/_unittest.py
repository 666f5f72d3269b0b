# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The unittest the plugin gives a board that has none (all 1.9-era boards, most builds):
# what a test module needs from `import unittest` when the host runs its tests one by one.
# MicroPython 1.9 and 16 KB of RAM: a class stands for the module (put in sys.modules while
# the test module loads). The file is in sections, each after a line "#@ NAME": the host
# sends "core", then only the sections of the names the test module uses (every name and
# every function costs a small board RAM it does not get back), each in pieces of one small
# statement. One-space indentation, no f-strings.
#@ core
class _mpbt_ut:
 pass
class _mpbt_f(Exception):
 pass
_mpbt_ut.SkipTest=_mpbt_f
class _mpbt_f:
 def __init__(s,n='runTest'):
  pass
 def setUp(s):
  pass
 def tearDown(s):
  pass
 def _mpbt_e(s,m,d):
  raise AssertionError(m if m is not None else d)
_mpbt_ut.TestCase=_mpbt_f
_mpbt_f.setUpClass=_mpbt_f.tearDownClass=classmethod(lambda c:None)
_mpbt_ut.main=lambda *a,**k:None
#@ skip skipIf skipUnless
def _mpbt_f(m):
 def _mpbt_d(f):
  if isinstance(f,type):
   f.__unittest_skip__=m
   return f
  def _mpbt_w(*a,**k):
   raise _mpbt_ut.SkipTest(m)
  return _mpbt_w
 return _mpbt_d
_mpbt_ut.skip=_mpbt_f
_mpbt_ut.skipIf=lambda c,m:_mpbt_ut.skip(m) if c else (lambda f:f)
_mpbt_ut.skipUnless=lambda c,m:_mpbt_ut.skip(m) if not c else (lambda f:f)
#@ expectedFailure
def _mpbt_f(f):
 def _mpbt_w(*a,**k):
  try:
   f(*a,**k)
  except Exception:
   raise _mpbt_ut.SkipTest('expected failure')
  raise AssertionError('unexpected success')
 return _mpbt_w
_mpbt_ut.expectedFailure=_mpbt_f
#@ skipTest
def _mpbt_f(s,m):
 raise _mpbt_ut.SkipTest(m)
_mpbt_ut.TestCase.skipTest=_mpbt_f
#@ fail
def _mpbt_f(s,m=None):
 raise AssertionError(m)
_mpbt_ut.TestCase.fail=_mpbt_f
#@ assertEqual
def _mpbt_f(s,a,b,m=None):
 if not a==b:
  s._mpbt_e(m,'%r != %r'%(a,b))
_mpbt_ut.TestCase.assertEqual=_mpbt_f
#@ assertNotEqual
def _mpbt_f(s,a,b,m=None):
 if not a!=b:
  s._mpbt_e(m,'%r == %r'%(a,b))
_mpbt_ut.TestCase.assertNotEqual=_mpbt_f
#@ assertIs
def _mpbt_f(s,a,b,m=None):
 if not a is b:
  s._mpbt_e(m,'%r is not %r'%(a,b))
_mpbt_ut.TestCase.assertIs=_mpbt_f
#@ assertIsNot
def _mpbt_f(s,a,b,m=None):
 if not a is not b:
  s._mpbt_e(m,'%r is %r'%(a,b))
_mpbt_ut.TestCase.assertIsNot=_mpbt_f
#@ assertIn
def _mpbt_f(s,a,b,m=None):
 if not a in b:
  s._mpbt_e(m,'%r not found in %r'%(a,b))
_mpbt_ut.TestCase.assertIn=_mpbt_f
#@ assertNotIn
def _mpbt_f(s,a,b,m=None):
 if not a not in b:
  s._mpbt_e(m,'%r unexpectedly found in %r'%(a,b))
_mpbt_ut.TestCase.assertNotIn=_mpbt_f
#@ assertIsInstance
def _mpbt_f(s,a,b,m=None):
 if not isinstance(a,b):
  s._mpbt_e(m,'%r is not an instance of %r'%(a,b))
_mpbt_ut.TestCase.assertIsInstance=_mpbt_f
#@ assertNotIsInstance
def _mpbt_f(s,a,b,m=None):
 if not not isinstance(a,b):
  s._mpbt_e(m,'%r is an instance of %r'%(a,b))
_mpbt_ut.TestCase.assertNotIsInstance=_mpbt_f
#@ assertLess
def _mpbt_f(s,a,b,m=None):
 if not a<b:
  s._mpbt_e(m,'%r not less than %r'%(a,b))
_mpbt_ut.TestCase.assertLess=_mpbt_f
#@ assertLessEqual
def _mpbt_f(s,a,b,m=None):
 if not a<=b:
  s._mpbt_e(m,'%r not less than or equal to %r'%(a,b))
_mpbt_ut.TestCase.assertLessEqual=_mpbt_f
#@ assertGreater
def _mpbt_f(s,a,b,m=None):
 if not a>b:
  s._mpbt_e(m,'%r not greater than %r'%(a,b))
_mpbt_ut.TestCase.assertGreater=_mpbt_f
#@ assertGreaterEqual
def _mpbt_f(s,a,b,m=None):
 if not a>=b:
  s._mpbt_e(m,'%r not greater than or equal to %r'%(a,b))
_mpbt_ut.TestCase.assertGreaterEqual=_mpbt_f
#@ assertTrue
def _mpbt_f(s,x,m=None):
 if not (x):
  s._mpbt_e(m,'%r is not true'%(x,))
_mpbt_ut.TestCase.assertTrue=_mpbt_f
#@ assertFalse
def _mpbt_f(s,x,m=None):
 if not (not x):
  s._mpbt_e(m,'%r is not false'%(x,))
_mpbt_ut.TestCase.assertFalse=_mpbt_f
#@ assertIsNone
def _mpbt_f(s,x,m=None):
 if not (x is None):
  s._mpbt_e(m,'%r is not None'%(x,))
_mpbt_ut.TestCase.assertIsNone=_mpbt_f
#@ assertIsNotNone
def _mpbt_f(s,x,m=None):
 if not (x is not None):
  s._mpbt_e(m,'unexpectedly None')
_mpbt_ut.TestCase.assertIsNotNone=_mpbt_f
#@ assertAlmostEqual
def _mpbt_f(s,a,b,places=7,msg=None,delta=None):
 if delta is None:
  if a!=b and round(abs(a-b),places)!=0:
   s._mpbt_e(msg,'%r != %r within %r places'%(a,b,places))
 elif abs(a-b)>delta:
  s._mpbt_e(msg,'%r != %r within %r delta'%(a,b,delta))
_mpbt_ut.TestCase.assertAlmostEqual=_mpbt_f
#@ assertRaises
class _mpbt_f:
 def __init__(s,e):
  s.expected=e
  s.exception=None
 def __enter__(s):
  return s
 def __exit__(s,t,v,b):
  if t is None:
   raise AssertionError('%r not raised'%(s.expected,))
  if issubclass(t,s.expected):
   s.exception=v
   return True
_mpbt_ut._AR=_mpbt_f
def _mpbt_f(s,e,f=None,*a,**k):
 c=_mpbt_ut._AR(e)
 if f is None:
  return c
 with c:
  f(*a,**k)
_mpbt_ut.TestCase.assertRaises=_mpbt_f
