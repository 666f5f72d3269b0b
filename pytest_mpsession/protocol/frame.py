r"""Checked exchanges: the board-side wrapper that verifies code before running it, and the
host side of its framed, checksummed reply. No I/O.

A checked exchange sends one line of raw-REPL code, a call of the wrapper::

    _mpsx(N, C, 'code as a literal', K, O)

(``K`` and ``O`` left out when both are 0, the wrapper's defaults). ``N`` is the exchange
number, ``K`` the namespace key (0: the board's ``__main__``), ``O`` the operation (bit 0:
evaluate instead of execute; bit 1: do not record ``N``; bit 2: a session's cleanup, which
takes no reserve and, given a namespace key, drops that namespace before its code is even
compiled and runs in ``__main__``; bit 3: no reserve), and ``C`` the checksum of the
code's UTF-8 bytes seeded with ``N + 16*K + O``: a byte lost, added or changed anywhere in
the line either breaks its syntax (nothing runs) or makes the checksum disagree, and the
wrapper then runs nothing and answers ``TOKEN!``.
Before running anything the wrapper records ``N`` (``_mps_s[0]``), so after a damaged reply
the host can ask whether exchange ``N`` ran (:data:`RAN_QUERY`) and send it again only when
it did not.

The reply is framed with the token ``\x1eN``: ``TOKEN(`` + the code's output (any bytes,
``\x04`` too) + [``TOKENe`` + traceback] + ``TOKEN)`` + status (``.`` ended, ``x``
``SystemExit``, ``e`` exception) + the number of result records. A result record (printed by
``_mps_r``) is ``\x1e`` + ``repr(value)`` + ``\x1f`` + checksum + newline, so values are checked
too. The board's checksum is ``binascii.crc32`` where it has one, otherwise a Fletcher-style
sum in pure Python (MicroPython 1.9 on a micro:bit has no ``binascii``); both are cut to 30
bits so they stay small ints on every board.

A session that filled the heap gets its cleanup all the same: the cleanup's line is small, the
session's compiled code is garbage by then, and the wrapper drops the session's namespace
before it compiles the cleanup's code. The wrapper can also keep ``_mps_s[2]`` bytes reserved
while code runs (0 by default: nothing allocated) and free them when it ends.
"""

from __future__ import annotations

import io
import itertools
import re
import tokenize
import zlib
from typing import Final

__all__ = [
    "BOOTSTRAPPED",
    "HASHER",
    "OP_EVAL",
    "OP_HELPER",
    "OP_NORECORD",
    "OP_NORESERVE",
    "PROBE",
    "RAN_QUERY",
    "WRAPPER",
    "bootstrap",
    "checksum",
    "parse_ran",
    "parse_records",
    "split_statements",
    "token",
    "wire",
    "wire_streamed",
]

OP_EVAL: Final = 1
OP_NORECORD: Final = 2
#: a session's cleanup: no reserve taken; with a namespace key, that namespace is dropped
#: before the code is compiled (it runs in ``__main__``), so a full heap is freed first
OP_HELPER: Final = 4
#: no reserve taken while the code runs: sent again so when the board had no memory to
#: compile the code beside its reserve (a small board's fragmented heap)
OP_NORESERVE: Final = 8
_MASK: Final = 0x3FFFFFFF

#: Board code of the checksum, sent first and as it is (MicroPython 1.9, one-space
#: indentation, no f-strings); it prints ``\x1e`` + which checksum the board uses (``c``
#: crc32, ``a`` the pure-Python sum) + the checksum of a test vector (:data:`PROBE`), so a
#: damaged copy is seen at once, and then its free memory (how long a piece of code it can
#: take: see ``Communicator.piece_size``).
HASHER: Final = r"""try:
 from binascii import crc32
 def _mpsh(s,v,c=crc32):
  return c(s,v)&1073741823
 crc32='c'
except ImportError:
 def _mpsh(s,v):
  a=v&65535
  b=v>>16&16383
  for c in bytes(s,'utf8'):
   a=(a+c)%65521
   b=(b+a)%16381
  return b<<16|a
 crc32='a'
print('\x1e'+crc32+str(_mpsh('mpsession',12345)),__import__('gc').mem_free())
del crc32
"""
#: The test vector of :data:`HASHER`: ``(text, seed)``.
PROBE: Final = (b"mpsession", 12345)

#: Board code of the wrapper, installed through :func:`bootstrap` lines once :data:`HASHER`
#: is there (so every byte of it is checked). ``{reserve}`` is the size of the reserve kept
#: free between exchanges. Few names go into ``__main__`` (a small board's globals dict
#: grows in one piece): the state is one list, ``_mps_s`` = [last exchange number, records
#: printed, reserve size, the reserve, the sys module]. ``_mpsx`` checks the code and runs
#: it (``_mpst`` ends the reply once the code is done): it is the raw REPL's one call, so
#: code runs one call deep (a micro:bit's 1.9.2 firmware allows very few nested calls; the
#: checksum and namespace calls return before the code starts). Each frame marker goes out
#: in one ``print`` (one write to the link; the reply comes in as few reads as the board
#: allows), and no reserve is allocated when its size is 0. ``_mps_r`` keeps its three small
#: prints: it runs deep inside the code, where a micro:bit's C stack has no room for a
#: bigger frame (one print with ``%`` formatting there is a recursion error).
WRAPPER: Final = r"""try:
 _mps_ns
except NameError:
 _mps_ns={}
_mps_s=[0,0,{reserve},None,__import__('sys')]
def _mps_r(v):
 r=repr(v)
 print('\x1e',end='')
 print(r,end='')
 print('\x1f%d'%_mpsh(r,0))
 _mps_s[1]+=1
def _mpsg(k):
 if not k:
  return globals()
 g=_mps_ns.get(k)
 if g is None:
  g={'__name__':'__main__'}
  _mps_ns[k]=g
 return g
def _mpsx(n,c,s,k=0,o=0):
 m=_mps_s
 t='\x1e%d'%n
 if type(s) is int:
  print(t+'<',end='')
  s=m[4].stdin.read(s)
 if _mpsh(s,n+16*k+o)!=c:
  print(t+'!',end='')
  return
 if o&4 and k:
  _mps_ns.pop(k,None)
  k=0
 g=_mpsg(k)
 if not o&2:
  m[0]=n
 m[1]=0
 if m[2] and not o&12:
  try:
   m[3]=bytearray(m[2])
  except MemoryError:
   pass
 print(t+'(',end='')
 e=0
 try:
  if o&1:
   _mps_r(eval(s,g))
  else:
   exec(s,g)
 except BaseException as x:
  e=x
 m[3]=s=g=None
 _mpst(t,e,m)
def _mpst(t,e,m):
 if e:
  if isinstance(e,SystemExit):
   e='x'
  else:
   print(t+'e',end='')
   m[4].print_exception(e)
   e='e'
 else:
  e='.'
 print('%s)%s%d'%(t,e,m[1]),end='')
__mpsession_up=1
"""

#: What a :func:`bootstrap` line prints once its code ran.
BOOTSTRAPPED: Final = b"\x1e+"


def bootstrap(code: str, algo: str) -> str:
    """Raw-REPL code that runs ``code`` (in ``__main__``) only when it arrived intact (its
    checksum, by :data:`HASHER`'s ``_mpsh``, matches) and then prints :data:`BOOTSTRAPPED`."""
    check = checksum(code.encode("utf-8", "surrogateescape"), 0, algo)
    # one expression: no name is left in __main__
    return (
        f"(lambda y:_mpsh(y,0)=={check} and exec(y,globals()) is None and "
        f"print('\\x1e+'))({code!r})"
    )


#: Unchecked code whose answer says which exchange the wrapper last started (see module doc):
#: the reply is ``\x1e?N:M`` with ``M = N * 7 % 9973`` as a check of its own.
RAN_QUERY: Final = "(lambda n:print('\\x1e?%d:%d'%(n,n*7%9973)))(_mps_s[0])"
_RAN_REPLY = re.compile(rb"\x1e\?(\d+):(\d+)")


def checksum(data: bytes, seed: int, algo: str) -> int:
    """The board's checksum of ``data`` (UTF-8 bytes) with ``seed``: ``algo`` ``"c"``
    (crc32) or ``"a"`` (the pure-Python sum of boards without ``binascii``)."""
    if algo == "c":
        return zlib.crc32(data, seed) & _MASK
    a = seed & 0xFFFF
    b = (seed >> 16) & 16383
    for c in data:
        a = (a + c) % 65521
        b = (b + a) % 16381
    return (b << 16) | a


def token(n: int) -> bytes:
    """The frame token of exchange ``n``."""
    return b"\x1e%d" % n


def wire(n: int, code: str, key: int, op: int, algo: str) -> bytes:
    """The raw-REPL line that runs ``code`` checked (see the module docstring)."""
    data = code.encode("utf-8", "surrogateescape")
    check = checksum(data, n + 16 * key + op, algo)
    literal = repr(code)
    # namespace 0, operation 0 (the usual exec) are the wrapper's defaults: 4 bytes less
    if key or op:
        line = f"_mpsx({n},{check},{literal},{key},{op})"
    else:
        line = f"_mpsx({n},{check},{literal})"
    return line.encode("utf-8", "surrogateescape")


def wire_streamed(n: int, code: str, key: int, op: int, algo: str) -> tuple[bytes, bytes]:
    """The raw-REPL line of a checked exchange whose code follows as it is, read by the
    wrapper from its stdin (no literal: a small board holds the source once, as when
    mpremote sends it), and those bytes."""
    data = code.encode("utf-8", "surrogateescape")
    check = checksum(data, n + 16 * key + op, algo)
    return f"_mpsx({n},{check},{len(data)},{key},{op})".encode(), data


def parse_ran(out: bytes) -> int | None:
    """The exchange number in an answer to :data:`RAN_QUERY` (None: not a valid answer)."""
    m = _RAN_REPLY.search(out)
    if m is None:
        return None
    n, check = int(m.group(1)), int(m.group(2))
    return n if n * 7 % 9973 == check else None


_RECORD_END = re.compile(rb"\x1e([^\x1e\x1f]*)\x1f(\d+)\r?\n\Z")


def parse_records(out: bytes, count: int, algo: str) -> tuple[bytes, list[bytes]]:
    """Split a framed reply's output into what the code printed and its ``count`` result
    records (each a board ``repr``), checking every record's checksum. ValueError when the
    records are not there intact."""
    records: list[bytes] = []
    end = len(out)
    for _ in range(count):
        m = _RECORD_END.search(out, 0, end)
        if m is None:
            raise ValueError("a result record is missing or damaged")
        text, check = m.group(1), int(m.group(2))
        if checksum(text, 0, algo) != check:
            raise ValueError("a result record's checksum does not match")
        records.append(text)
        end = m.start()
    records.reverse()
    return out[:end], records


_CONTINUATIONS: Final = ("else", "elif", "except", "finally")
#: Collects the garbage a piece's compilation left, so the next compiles in one piece of heap.
GC_LINE: Final = "__import__('gc').collect()\n"


def _statement_starts(code: str) -> list[int]:
    """0-based line numbers where a top-level statement starts (never inside a string,
    brackets, a compound statement or after a decorator); [0] when the code cannot be
    tokenized (it then goes whole)."""
    starts = [0]
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return starts
    depth = 0
    indent = 0
    line_start = True
    after_decorator = False
    skip = {tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE}
    for tok in tokens:
        if tok.type == tokenize.INDENT:
            indent += 1
        elif tok.type == tokenize.DEDENT:
            indent -= 1
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        if tok.type == tokenize.NEWLINE:
            line_start = True
            continue
        if tok.type in skip or tok.type == tokenize.ENDMARKER:
            continue
        if line_start and depth == 0 and indent == 0:
            is_deco = tok.string == "@"
            if not after_decorator and tok.string not in _CONTINUATIONS:
                row = tok.start[0] - 1
                if row > 0 and row not in starts:
                    starts.append(row)
            after_decorator = is_deco
        line_start = False
    return starts


def split_statements(code: str, limit: int, *, gc: bool = False) -> list[str]:
    """``code`` cut between top-level statements into pieces of about ``limit`` bytes at
    most (a longer statement stays whole). Each piece starts with as many empty lines as
    code before it, so line numbers (and tracebacks) stay those of the whole; with ``gc``,
    instead, each piece ends by collecting its garbage (board helper code)."""
    lines = code.splitlines(keepends=True)
    starts = [*_statement_starts(code), len(lines)]
    pieces: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(starts):
        if pieces:
            first = pieces[-1][0]
            if sum(len(x) for x in lines[first:b]) <= limit:
                pieces[-1] = (first, b)
                continue
        pieces.append((a, b))
    out = []
    for a, b in pieces:
        text = "".join(lines[a:b])
        out.append(text + GC_LINE if gc else "\n" * a + text)
    return out or [code]
