r"""Board-side helper code of the session core, as MicroPython source text.

Everything here runs on the board and is written for MicroPython 1.9 on a 16 KB board: no
f-strings, no ``type.__name__``, no ``os.ilistdir``/``os.stat`` required, no ``hashlib``
required, one-space indentation (every byte is RAM while it compiles).

The helpers live in the raw REPL's globals (``__main__``) and are sent in parts, only when the
board lacks them: before the first exchange that needs a part, and again after a reset
emptied the board's RAM (``Communicator.reset_count`` changed). A part goes in pieces of at
most ``PART_PIECE`` bytes cut between top-level statements, each in an exchange of its own
(a few extra round trips per part and board life): compiling more at once needs more RAM
than a 16 KB board has free. Every piece is checked on every board, the 16 KB ones included
(``Communicator.install_code``: it runs only when its checksum matches, so a byte lost on the
way never leaves a helper that compiles and answers wrong): it travels as a literal and the
board holds it twice while it compiles, so no top-level statement is long (big functions are
cut in two, called one after the other, never one deeper: a micro:bit allows few nested
calls); a piece the board has no memory for goes again one definition at a time, and a piece
that is one ``if`` (:func:`piece_guard`) goes only where its condition holds. Each part is
idempotent: sending it twice keeps every session's namespace.

Board names (all start with ``_mps`` so they never meet a user's names in ``__main__``):

``_mps_ns``  ``{session key: namespace dict}``; session keys are small ints, never strings,
             because every string literal the board compiles may be interned for good (a
             qstr), and 10,000 sessions must not leak 10,000 strings.
``_mps_th``  ``{session key: {thread id: 1 running | 0 finished | 'repr(exception)'}}``
``_mps_sf``  the session keys whose threads are asked to stop (``mps_should_stop()``)
``_mps_r(v)`` prints the result marker ``\x1e`` then ``repr(v)``: the host takes what follows
             the last marker as the value, so a function's own prints never mix into it.
             Long answers (listings, file contents) are printed as one marked piece per
             entry, so no big repr has to be built in a small board's fragmented heap.
"""

from __future__ import annotations

import re

from pytest_mpsession.protocol.frame import GC_LINE

__all__ = ["PARTS", "RESULT_MARKER"]

#: Printed by ``_mps_r`` right before a result's repr.
RESULT_MARKER = "\x1e"

# The core. Namespaces, the checked exchange and ``_mps_r`` are the communicator's wrapper
# (protocol/frame.py); the session core adds its namespace maker, calls, threads and the
# cleanup, and takes the board's baseline once per board life, before any user code:
# _mps_b = [sys.path, opt_level, sys.modules names, the builtins below, mem_free, gc,
# builtins, micropython, sys, a function returning the builtins as code looks them up (a
# replaced one lives in the board's override table, which getattr(builtins, name) does not
# show), their names, delattr, setattr, the schedule queue's free slots (see _mps_y)]. A
# board with room (over 32 KB free) watches every name of dir(builtins); a small one only
# __import__, print, open, exec, eval, repr, getattr and isinstance. A replaced builtin is
# put back by deleting the override (the board's own value shows again) or, where the
# baseline itself had one, by setting it again. (A 1.9.2 micro:bit has neither sys.path nor
# sys.modules.)
# _mps_d(k, w): frees the namespace first (nothing allocated before: the heap may be full),
# asks k's threads to stop and waits at most w ms, then brings the board back to its
# baseline (sys.path, opt_level, modules the session imported, replaced builtins), lets
# scheduled callbacks run (_mps_z), and prints (ids of threads still running, {id: error of
# failed threads}, mem_free, baseline mem_free, [what could not be restored], whether
# scheduled callbacks are still pending): CLEANUP, calls made one after the other, never
# nested (a micro:bit allows few nested calls).
# _mps_y(m, n, c): drains micropython.schedule's queue in at most n rounds (each bounded): a
# marker callback is scheduled and the board runs until it ran (the queue is first in, first
# out, so every callback pending before it ran too); inside it (where the scheduler is locked:
# nothing runs meanwhile) it counts how many more callbacks the queue takes. Returns the most
# free slots seen (-1: no scheduler), stopping once c are free. The baseline's count (element
# 13) is the queue's room on a board at rest; fewer free slots after every round at cleanup
# time is a callback that schedules itself again, which only a reset stops.
# _mps_th is assigned last and is what says the core is there: an install cut short (a Ctrl-C
# sent by a recovery while _mps_b() ran) is done again in full by the next one.
CORE = r"""if hasattr(__import__('micropython'),'schedule'):
 def _mps_y(m,n,c):
  s=getattr(m,'schedule',None)
  q=[0,0,0]
  def z(a):
   q[0]+=1
  def t(a):
   k=0
   try:
    while k<32:
     s(z,0)
     k+=1
   except:
    pass
   q[1]=k
   q[2]=1
  f=-1
  while s and n>0 and f<c:
   n-=1
   q[0]=q[1]=q[2]=0
   try:
    s(t,0)
   except:
    pass
   i=0
   while not q[2] and i<3000:
    i+=1
   while q[0]<q[1] and i<6000:
    i+=1
   if q[2] and q[1]>f:
    f=q[1]
  return f
def _mps_B(m):
 import gc,builtins,sys
 gc.collect()
 e=lambda:(__import__,print,open,exec,eval,repr,getattr,isinstance)
 d=('__import__','print','open','exec','eval','repr','getattr','isinstance')
 if gc.mem_free()>32768:
  e,d=_mps_bw(builtins,e,d)
 return [list(getattr(sys,'path',[])),m and m.opt_level(),list(getattr(sys,'modules',())),
  e(),gc.mem_free(),gc,builtins,m,sys,e,d]
def _mps_bm():
 try:
  import micropython as m
  m.opt_level()
  return m
 except Exception:
  return None
def _mps_bw(b,e,d):
 try:
  n=tuple(n for n in dir(b) if n[:2]!='__' or n=='__import__')
  f=eval('lambda:('+','.join(n)+',)',{})
  f()
  return f,n
 except Exception:
  return e,d
def _mps_c(k,f,a,w):
 _mps_r(_mpsg(k)[f](*a,**w))
try:
 _mps_th
except NameError:
 _mps_sf=set()
 _mps_b=_mps_B(_mps_bm())
 _mps_b+=[getattr(_mps_b[6],'delattr',None),getattr(_mps_b[6],'setattr',None),
  _mps_y(_mps_b[7],4,99) if getattr(_mps_b[7],'schedule',0) else -1]
 _mps_th={}
[globals().pop(n,None) for n in ('_mps_bm','_mps_B','_mps_bw')]
def _mps_d(k,w):
 _mps_ns.pop(k,None)
 r=_mps_th.pop(k,None)
 _mps_b[5].collect()
 s=[]
 e={}
 if r:
  _mps_sf.add(k)
  import time
  while 1:
   s=[i for i in r if r[i]==1]
   if not s or w<=0:
    break
   time.sleep_ms(5)
   w-=5
  for i in r:
   if isinstance(r[i],str):
    e[i]=r[i]
  if not s:
   _mps_sf.discard(k)
 r=None
 return (s,e)
def _mps_zm(b):
 y=b[8]
 try:
  p=y.path
  while p:
   p.pop()
  p.extend(b[0])
 except Exception:
  pass
 if b[7]:
  b[7].opt_level(b[1])
 for m in list(getattr(y,'modules',())):
  if m not in b[2]:
   y.modules.pop(m)
def _mps_z(b):
 x=[]
 c=b[9]()
 i=-1
 for v in c:
  i+=1
  if v is not b[3][i]:
   n=b[10][i]
   try:
    b[11](b[6],n)
   except:
    pass
   if b[9]()[i] is not b[3][i]:
    try:
     b[12](b[6],n,b[3][i])
    except:
     pass
   if b[9]()[i] is not b[3][i]:
    x.append(n)
 _mps_zm(b)
 b[5].collect()
 return (b[5].mem_free(),b[4],x,b[13]>0 and _mps_y(b[7],4,b[13])<b[13])
"""


def cleanup_code(key: int, wait_ms: int) -> str:
    """The board code of a session's "clean" cleanup (see CORE)."""
    return f"_mps_r(_mps_d({key},{wait_ms})+_mps_z(_mps_b))"


# Looking into a namespace (DeviceContext).
CONTEXT = r"""def _mps_v(k):
 n=_mps_ns.get(k) or {}
 for x in n:
  _mps_r((x,repr(n[x])))
def _mps_h(k,x):
 _mps_r(x in (_mps_ns.get(k) or {}))
"""

# Background threads. mps_should_stop() is put in the session's namespace so the function
# can poll it; it stays true for a stuck thread even after its session is gone.
THREAD = r"""def _mps_t(k,i,f,a):
 import _thread
 r=_mps_th.get(k)
 if r is None:
  r={}
  _mps_th[k]=r
 n=_mpsg(k)
 if 'mps_should_stop' not in n:
  n['mps_should_stop']=lambda:k in _mps_sf
 g=n[f]
 r[i]=1
 def w():
  try:
   g(*a)
   r[i]=0
  except BaseException as x:
   r[i]=repr(x)
 _thread.start_new_thread(w,())
 _mps_r(i)
def _mps_q(k):
 _mps_r(_mps_th.get(k) or {})
"""

# Files, without os.stat/os.ilistdir/hashlib where the board lacks them (1.9 has os.size),
# in two parts so that each compiles within a 16 KB board's free RAM.
# _mps_fs(p): ('f'|'d', size) or None when p does not exist.
# _mps_fh(p,d,a): does file p hold the content whose sha256 digest is d (or, without a
#   hashlib, whose adler-32 pair is a)?
# _mps_fw(p,z,d,a,b,m): unless p already holds that content (size z), write chunk b to p
#   and keep it open in _mps_wf when more chunks (m) follow; prints 1 written / 0 skipped.
#   While more chunks follow, each chunk's garbage (its literal) is collected at once, so the
#   next chunk's literal finds room in one piece on a small board.
FS_READ = r"""def _mps_fs(p):
 import os
 try:
  s=os.stat(p)
  return ('d' if s[0]&16384 else 'f',s[6])
 except AttributeError:
  pass
 except OSError:
  return None
 try:
  return ('f',os.size(p))
 except Exception:
  return None
def _mps_fj(d,n):
 if d in ('','.'):
  return n
 if d[-1]=='/':
  return d+n
 return d+'/'+n
def _mps_fl(p,i):
 import os
 try:
  l=os.listdir(p)
 except TypeError:
  l=os.listdir()
 for x in l:
  _mps_r((x,_mps_fs(_mps_fj(p,x))) if i else x)
def _mps_fc():
 import os
 try:
  _mps_r(os.getcwd())
 except AttributeError:
  _mps_r('')
def _mps_fr(p,n):
 f=open(p,'rb')
 try:
  while 1:
   b=f.read(n)
   if not b:
    break
   _mps_r(b)
 finally:
  f.close()
"""

# Writing files (needs FS_READ's _mps_fs).
FS_WRITE = r"""def _mps_fh(p,d,a,h):
 x=1
 y=0
 f=open(p,'rb')
 try:
  while 1:
   b=f.read(256)
   if not b:
    break
   if h is not None:
    h.update(b)
   else:
    for c in b:
     x=(x+c)%65521
     y=(y+x)%65521
 finally:
  f.close()
 if h is not None:
  return h.digest()==d
 return (x,y)==a
def _mps_fa(b,m):
 global _mps_wf
 _mps_wf.write(b)
 if m:
  __import__('gc').collect()
 else:
  _mps_wf.close()
  _mps_wf=None
def _mps_fw(p,z,d,a,b,m):
 global _mps_wf
 s=_mps_fs(p)
 if s and s[0]=='f' and s[1]==z and _mps_fh(p,d,a,_mps_fk()):
  _mps_r(0)
  return
 f=open(p,'wb')
 f.write(b)
 if m:
  _mps_wf=f
  __import__('gc').collect()
 else:
  f.close()
 _mps_r(1)
def _mps_fk():
 try:
  import hashlib
  return hashlib.sha256()
 except Exception:
  pass
 try:
  import uhashlib
  return uhashlib.sha256()
 except Exception:
  return None
def _mps_fm(p):
 import os
 try:
  m=os.mkdir
 except AttributeError:
  raise NotImplementedError('this board has no os.mkdir: its filesystem is flat')
 m(p)
def _mps_fd(p):
 import os
 os.remove(p)
"""

#: Largest piece of the session's helper source sent in one exchange (see ``PARTS``).
PART_PIECE = 440

#: Largest piece of other board code (the board-test runner's) sent in one exchange.
#: Compiling costs a small board far more RAM than the source's size (the whole core at
#: once needs ~9 KB free, in pieces ~6 KB), and up to 256 bytes go out in one write even in
#: plain raw mode.
PIECE_SIZE = 256

_CONTINUATIONS = ("except", "else", "elif", "finally")


def split_pieces(source: str, limit: int = PIECE_SIZE) -> tuple[str, ...]:
    """``source`` cut between top-level statements into pieces of at most ``limit`` bytes
    (a single statement longer than that stays whole)."""
    statements: list[str] = []
    for line in source.splitlines(keepends=True):
        starts = line[:1] not in (" ", "") and not line.startswith(_CONTINUATIONS)
        if starts or not statements:
            statements.append(line)
        else:
            statements[-1] += line
    pieces: list[str] = []
    for statement in statements:
        if pieces and len(pieces[-1]) + len(statement) <= limit:
            pieces[-1] += statement
        else:
            pieces.append(statement)
    # Each piece ends by collecting the garbage of its own compilation, so the next piece
    # compiles in an unfragmented heap (a 16 KB board fails to find 1.3 KB in one run
    # otherwise, with 9 KB free). MicroPython 1.9 has __import__; no name is left behind.
    return tuple(piece + GC_LINE for piece in pieces)


#: The helper parts by name, in the order they must be installed ("core" first), each as the
#: pieces sent one exchange at a time.
PARTS: dict[str, tuple[str, ...]] = {
    name: split_pieces(source, PART_PIECE)
    for name, source in (
        ("core", CORE),
        ("context", CONTEXT),
        ("thread", THREAD),
        ("fs_read", FS_READ),
        ("fs_write", FS_WRITE),
    )
}


def piece_guard(piece: str) -> str:
    """The condition of a piece that is one ``if`` statement (``"if COND:"`` on its first
    line): the manager asks the board and sends the piece only where it holds, so a small
    board never compiles what it cannot use. ``""`` for any other piece."""
    first, _, _ = piece.partition("\n")
    if first.startswith("if ") and first.endswith(":"):
        return first[3:-1]
    return ""


def _defined_names(source: str) -> tuple[str, ...]:
    return tuple(re.findall(r"^def (\w+)", source, flags=re.M))


#: The board names each part defines (what :func:`uninstall_code` removes).
PART_NAMES: dict[str, tuple[str, ...]] = {
    name: _defined_names("".join(pieces)) for name, pieces in PARTS.items()
}
PART_NAMES["fs_write"] += ("_mps_wf",)


def uninstall_code(parts: tuple[str, ...]) -> str:
    """Board code removing the names of ``parts`` from ``__main__`` and collecting the
    garbage: a small board gets the RAM of helpers it uses rarely back between uses."""
    names = tuple(n for part in parts for n in PART_NAMES[part])
    return f"[globals().pop(n,None) for n in {names!r}]\n{GC_LINE}"
