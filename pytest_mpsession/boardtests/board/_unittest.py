# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run on the board, not CPython: shipped as package data)
# The unittest the plugin gives a board that has none (all 1.9-era boards, most builds):
# what a test module needs from `import unittest` when the host runs its tests one by one.
# MicroPython 1.9 and 16 KB of RAM: a class used as the module (put in sys.modules while the
# test module runs), one-space indentation, no f-strings.
class _mpbt_ut:
 class SkipTest(Exception):
  pass
 def skip(m):
  def d(f):
   if isinstance(f,type):
    f.__unittest_skip__=m
    return f
   def w(*a,**k):
    raise _mpbt_ut.SkipTest(m)
   return w
  return d
 def skipIf(c,m):
  if c:
   return _mpbt_ut.skip(m)
  return lambda f:f
 def skipUnless(c,m):
  if not c:
   return _mpbt_ut.skip(m)
  return lambda f:f
 def expectedFailure(f):
  def w(*a,**k):
   try:
    f(*a,**k)
   except Exception:
    raise _mpbt_ut.SkipTest('expected failure')
   raise AssertionError('unexpected success')
  return w
 def main(*a,**k):
  pass
 class _AR:
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
   return False
 class TestCase:
  def __init__(s,n='runTest'):
   pass
  @classmethod
  def setUpClass(c):
   pass
  @classmethod
  def tearDownClass(c):
   pass
  def setUp(s):
   pass
  def tearDown(s):
   pass
  def skipTest(s,m):
   raise _mpbt_ut.SkipTest(m)
  def fail(s,m=None):
   raise AssertionError(m)
  def _f(s,x,m,d):
   if not x:
    raise AssertionError(m if m is not None else d)
  def assertEqual(s,a,b,m=None):
   s._f(a==b,m,'%r != %r'%(a,b))
  def assertNotEqual(s,a,b,m=None):
   s._f(a!=b,m,'%r == %r'%(a,b))
  def assertTrue(s,x,m=None):
   s._f(x,m,'%r is not true'%(x,))
  def assertFalse(s,x,m=None):
   s._f(not x,m,'%r is not false'%(x,))
  def assertIs(s,a,b,m=None):
   s._f(a is b,m,'%r is not %r'%(a,b))
  def assertIsNot(s,a,b,m=None):
   s._f(a is not b,m,'unexpectedly identical: %r'%(a,))
  def assertIsNone(s,x,m=None):
   s._f(x is None,m,'%r is not None'%(x,))
  def assertIsNotNone(s,x,m=None):
   s._f(x is not None,m,'unexpectedly None')
  def assertIn(s,a,b,m=None):
   s._f(a in b,m,'%r not found in %r'%(a,b))
  def assertNotIn(s,a,b,m=None):
   s._f(a not in b,m,'%r unexpectedly found in %r'%(a,b))
  def assertIsInstance(s,x,c,m=None):
   s._f(isinstance(x,c),m,'%r is not an instance of %r'%(x,c))
  def assertNotIsInstance(s,x,c,m=None):
   s._f(not isinstance(x,c),m,'%r is an instance of %r'%(x,c))
  def assertLess(s,a,b,m=None):
   s._f(a<b,m,'%r not less than %r'%(a,b))
  def assertLessEqual(s,a,b,m=None):
   s._f(a<=b,m,'%r not less than or equal to %r'%(a,b))
  def assertGreater(s,a,b,m=None):
   s._f(a>b,m,'%r not greater than %r'%(a,b))
  def assertGreaterEqual(s,a,b,m=None):
   s._f(a>=b,m,'%r not greater than or equal to %r'%(a,b))
  def assertAlmostEqual(s,a,b,places=None,msg=None,delta=None):
   if a==b:
    return
   if delta is not None:
    s._f(abs(a-b)<=delta,msg,'%r != %r within %r delta'%(a,b,delta))
   else:
    if places is None:
     places=7
    s._f(round(abs(a-b),places)==0,msg,'%r != %r within %r places'%(a,b,places))
  def assertNotAlmostEqual(s,a,b,places=None,msg=None,delta=None):
   if delta is not None:
    s._f(a!=b and abs(a-b)>delta,msg,'%r == %r within %r delta'%(a,b,delta))
   else:
    if places is None:
     places=7
    s._f(a!=b and round(abs(a-b),places)!=0,msg,'%r == %r within %r places'%(a,b,places))
  def assertRaises(s,e,f=None,*a,**k):
   c=_mpbt_ut._AR(e)
   if f is None:
    return c
   with c:
    f(*a,**k)
  def assertCountEqual(s,a,b,m=None):
   a=list(a)
   b=list(b)
   ok=len(a)==len(b)
   if ok:
    for x in a:
     if a.count(x)!=b.count(x):
      ok=False
      break
   s._f(ok,m,'element counts differ: %r, %r'%(a,b))
