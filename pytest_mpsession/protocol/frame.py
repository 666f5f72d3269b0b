r"""Checked exchanges: the board-side wrapper that verifies code before running it, and the
host side of its framed, checksummed reply. No I/O.

A checked exchange sends one line of raw-REPL code, a call of the wrapper::

    _mpsx(N, C, 'code as a literal', K, O)

``N`` is the exchange number, ``K`` the namespace key (0: the board's ``__main__``), ``O``
the operation (bit 0: evaluate instead of execute; bit 1: do not record ``N``;
bit 2: a helper call, which takes no reserve), and ``C`` the
checksum of the code's UTF-8 bytes seeded with ``N + 8*K + O``: a byte lost, added or changed
anywhere in the line either breaks its syntax (nothing runs) or makes the checksum disagree,
and the wrapper then runs nothing and answers ``TOKEN!``. Before running anything the wrapper
records ``N`` (``_mps_n``), so after a damaged reply the host can ask whether exchange ``N``
ran (:data:`RAN_QUERY`) and send it again only when it did not.

The reply is framed with the token ``\x1eN``: ``TOKEN(`` + the code's output (any bytes,
``\x04`` too) + [``TOKENe`` + traceback] + ``TOKEN)`` + status (``.`` ended, ``x``
``SystemExit``, ``e`` exception) + the number of result records. A result record (printed by
``_mps_r``) is ``\x1e`` + ``repr(value)`` + ``\x1f`` + checksum + newline, so values are checked
too. The board's checksum is ``binascii.crc32`` where it has one, otherwise a Fletcher-style
sum in pure Python (MicroPython 1.9 on a micro:bit has no ``binascii``); both are cut to 30
bits so they stay small ints on every board.

The wrapper also keeps ``_mps_rz`` bytes reserved while the code runs and frees them when it
ends, so the next exchange (a cleanup after a test filled the heap) has room to compile.
"""

from __future__ import annotations

import io
import itertools
import re
import tokenize
import zlib
from typing import Final

__all__ = [
    "OP_EVAL",
    "OP_HELPER",
    "OP_NORECORD",
    "RAN_QUERY",
    "WRAPPER",
    "checksum",
    "parse_ran",
    "parse_records",
    "split_statements",
    "token",
    "wire",
]

OP_EVAL: Final = 1
OP_NORECORD: Final = 2
#: a helper call (a cleanup): no reserve taken, so it may use what the last call freed
OP_HELPER: Final = 4
_MASK: Final = 0x3FFFFFFF

#: Board code of the wrapper (MicroPython 1.9, one-space indentation, no f-strings).
#: ``{reserve}`` is the size of the reserve kept free between exchanges. It ends by printing
#: which checksum the board uses (``c`` crc32, ``a`` the pure-Python sum).
WRAPPER: Final = r"""import sys as _mpsm
try:
 from binascii import crc32 as _mpsc
 def _mpsh(s,v):
  return _mpsc(s,v)&1073741823
 _mpsa='c'
except ImportError:
 def _mpsh(s,v):
  a=v&65535
  b=v>>16&16383
  for c in bytes(s,'utf8'):
   a=(a+c)%65521
   b=(b+a)%16381
  return b<<16|a
 _mpsa='a'
try:
 _mps_ns
except NameError:
 _mps_ns={}
_mps_n=0
_mps_k=0
_mps_rz={reserve}
_mps_rv=None
def _mps_r(v):
 global _mps_k
 r=repr(v)
 print('\x1e',end='')
 print(r,end='')
 print('\x1f%d'%_mpsh(r,0))
 _mps_k+=1
def _mpsx(n,c,s,k=0,o=0):
 global _mps_n,_mps_k,_mps_rv
 t='\x1e%d'%n
 if _mpsh(s,n+8*k+o)!=c:
  print(t+'!',end='')
  return
 if not o&2:
  _mps_n=n
 _mps_k=0
 if k:
  g=_mps_ns.get(k)
  if g is None:
   g={'__name__':'__main__'}
   _mps_ns[k]=g
 else:
  g=globals()
 if not o&4:
  try:
   _mps_rv=bytearray(_mps_rz)
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
 _mps_rv=s=g=None
 if e:
  if isinstance(e,SystemExit):
   e='x'
  else:
   print(t+'e',end='')
   _mpsm.print_exception(e)
   e='e'
 else:
  e='.'
 print(t+')'+e+str(_mps_k),end='')
__mpsession_up=1
print(_mpsa)
"""

#: Unchecked code whose answer says which exchange the wrapper last started (see module doc):
#: the reply is ``\x1e?N:M`` with ``M = N * 7 % 9973`` as a check of its own.
RAN_QUERY: Final = "print('\\x1e?%d:%d'%(_mps_n,_mps_n*7%9973))"
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
    check = checksum(data, n + 8 * key + op, algo)
    literal = repr(code)
    return f"_mpsx({n},{check},{literal},{key},{op})".encode("utf-8", "surrogateescape")


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
