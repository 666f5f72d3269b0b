"""What a board is and what it can do, found out in one exchange with it.

:func:`detect` sends one probe script (no f-strings, no ``type.__name__``: it runs on every
MicroPython from 1.9 on) that prints one ``@mps:key=value`` line per fact: implementation,
firmware version, ``sys.platform``, ``os.uname().machine``, the unique id, free memory, which
feature probes ran without raising, and a short timing loop. The host parses those lines
(ignoring anything else the board prints) into a :class:`DeviceCapabilities`, and measures a
:class:`PerformanceProfile` from the same exchange.

Boards too small for that script (old firmware without raw-paste buffers a whole exchange in
RAM; a micro:bit has about 8 KB free) are asked the same questions in several small
exchanges (:func:`small_scripts`); :func:`identify` (two small exchanges) is what the
capabilities cache is keyed on.

Feature probes are small pieces of board code; a board has a feature when its probe runs
without raising. Projects add their own with :meth:`FeatureProbes.add` (from the
``pytest_mpsession_probe_features`` hook or the ``mp_features`` ini key).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_mpsession.errors import DeviceError, DeviceTimeout, MpSessionError, ProtocolError

__all__ = [
    "KNOWN_FEATURES",
    "BoardIdentity",
    "DeviceCapabilities",
    "FeatureProbes",
    "FirmwareSpec",
    "PerformanceProfile",
    "cache_key",
    "detect",
    "identify",
    "identity_scripts",
    "parse_probe_output",
    "parse_version",
    "probe_script",
    "small_scripts",
]

# ---------------------------------------------------------------------------------------------
# Built-in feature probes
# ---------------------------------------------------------------------------------------------


# Each probe: board code that raises unless the board has the feature. Probes run in a fresh
# namespace holding ``I(name, *alternatives)``, which imports and returns the first of those
# modules that exists (old firmware names many modules with a ``u`` prefix only, ``ujson``).
# Import checks are paired with a behaviour check where an import alone could lie (a stub
# module, a build without float or bigint support, a compiler without the native emitters).
# They are terse on purpose: the board buffers the whole probe script before running it.
_BUILTIN_PROBES: dict[str, str] = {
    "threading": "I('_thread').allocate_lock()",
    "asyncio": "a=I('asyncio','uasyncio')\na.run\na.create_task",
    "float": "assert float('1.5')*2==3.0 and 1/2==0.5",
    "complex": "assert (1j*1j).real==-1",
    "bigint": "assert (1<<70)>>69==2",
    "filesystem": "I('os','uos').listdir()",
    "machine": "I('machine').Pin",
    "network": "I('network')",
    "wifi": "I('network').WLAN",
    "bluetooth": "I('bluetooth','ubluetooth').BLE",
    "socket": "I('socket','usocket').socket",
    "ssl": "I('ssl','ussl','tls')",
    "json": "assert I('json','ujson').loads('[1]')==[1]",
    "re": "assert I('re','ure').match('a+','aa')",
    "struct": "assert I('struct','ustruct').pack('<H',258)==b'\\x02\\x01'",
    "framebuf": "I('framebuf').FrameBuffer",
    "native": "@micropython.native\ndef f():\n return 1\nassert f()==1",
    "viper": "@micropython.viper\ndef f(x:int)->int:\n return x+1\nassert f(1)==2",
    "deflate": "I('deflate','zlib','uzlib')",
    "select": "I('select','uselect').poll",
}

#: Features that come from the host's side of the link rather than from a probe.
_PROTOCOL_FEATURES = ("raw_paste",)

#: Every feature name the plugin knows without configuration.
KNOWN_FEATURES: frozenset[str] = frozenset(_BUILTIN_PROBES) | frozenset(_PROTOCOL_FEATURES)

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Separators inside the probe table sent to the board: a probe's code must not contain them.
_REC_SEP = "\x1e"
_UNIT_SEP = "\x1f"


class FeatureProbes:
    """An ordered set of feature probes: ``name -> board code``.

    Starts with the built-in probes (pass ``builtin=False`` for an empty set). The board has
    a feature when its probe runs without raising, in a fresh namespace::

        probes.add("lora", "import sx127x")
        probes.add("big_heap", "assert __import__('gc').mem_free() > 100000")
    """

    def __init__(self, *, builtin: bool = True) -> None:
        self._probes: dict[str, str] = dict(_BUILTIN_PROBES) if builtin else {}

    def add(self, name: str, code: str) -> None:
        """Add (or replace) the probe for ``name``; ``ValueError`` on a bad name or code."""
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"feature name {name!r} is not valid: use letters, digits and '_' "
                "(not starting with a digit)"
            )
        if name in _PROTOCOL_FEATURES:
            raise ValueError(f"feature {name!r} is detected from the protocol and has no probe")
        if not isinstance(code, str) or not code.strip():
            raise ValueError(f"the probe for feature {name!r} is empty: give board code")
        if _REC_SEP in code or _UNIT_SEP in code:
            raise ValueError(f"the probe for feature {name!r} contains control characters")
        try:
            code.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(
                f"the probe for feature {name!r} is not ASCII (old boards cannot run it)"
            ) from None
        self._probes[name] = code

    def remove(self, name: str) -> None:
        """Forget the probe for ``name`` (no error when there is none)."""
        self._probes.pop(name, None)

    def names(self) -> frozenset[str]:
        """The feature names that can be asked for: probes plus protocol features."""
        return frozenset(self._probes) | frozenset(_PROTOCOL_FEATURES)

    def items(self) -> list[tuple[str, str]]:
        """``(name, code)`` pairs in the order they were added."""
        return list(self._probes.items())

    def digest(self) -> str:
        """A short stable hash of the probe set (part of the cache key)."""
        h = hashlib.sha256()
        for name, code in sorted(self._probes.items()):
            h.update(name.encode() + b"\0" + code.encode() + b"\0")
        return h.hexdigest()[:12]

    def __contains__(self, name: object) -> bool:
        return name in self._probes or name in _PROTOCOL_FEATURES

    def __iter__(self) -> Iterator[str]:
        return iter(self._probes)

    def __len__(self) -> int:
        return len(self._probes)

    def __repr__(self) -> str:
        return f"FeatureProbes({sorted(self._probes)!r})"


# ---------------------------------------------------------------------------------------------
# The board side: one script, MicroPython 1.9 compatible
# ---------------------------------------------------------------------------------------------

# Rules for the board code: it runs on MicroPython 1.9. No f-strings, no
# ``type.__name__``, no ``os.stat``; 1-space indents and short names, since the board buffers
# the whole script before compiling it. The script is a small driver plus a table of snippets
# in one string literal: each snippet is compiled only when its turn comes (compiling one big
# function needs more RAM than a small board has), modules a snippet imported are dropped
# again, and everything lives inside one function so the board's globals stay as they were.
# ``except Exception`` (never a bare except) so a Ctrl-C from the host still stops it.
#
# Table entries are ``name \x1f code`` separated by ``\x1e``. An entry with a name is a
# feature probe, run in a fresh namespace holding ``I``; the name is printed when it does not
# raise. An entry without a name is a step of the script itself, sharing one namespace ``g``.
# A MemoryError in any entry is reported (``@mps:m=``): the board is too small for the one-shot
# script, and :func:`detect` asks again in small pieces.
_DRIVER = """\
def _mps(P):
 import sys,gc
 def I(*a):
  for m in a:
   try:
    return __import__(m)
   except ImportError:
    pass
  raise ImportError(a[0])
 def w(k,v):
  print('@mps:'+k+'='+str(v))
 g={'I':I,'w':w,'sys':sys}
 i=0
 while i<len(P):
  j=P.find('\\x1e',i)
  if j<0:
   j=len(P)
  k=P.find('\\x1f',i,j)
  n=P[i:k]
  c=P[k+1:j]
  i=j+1
  b=list(sys.modules)
  try:
   if n:
    exec(c,{'I':I})
    w('f',n)
   else:
    exec(c,g)
  except Exception as e:
   if isinstance(e,MemoryError):
    w('m',n or '-')
  c=None
  for m in list(sys.modules):
   if m not in b:
    del sys.modules[m]
  gc.collect()
"""

# The script's own steps. ``T`` is the ticks clock where the board has one; ``t0`` when the
# script started running.
_STEP_START = """\
T=None
for m in ('time','utime'):
 try:
  T=__import__(m)
  T.ticks_us
  break
 except Exception:
  T=None
if T:
 t0=T.ticks_us()
w('go',1)
"""
_STEP_IDENTITY = """\
v=''
try:
 i=sys.implementation
 w('impl',i.name)
 v='.'.join([str(x) for x in i.version[:3]])
 if len(i.version)>3 and i.version[3]:
  v=v+'-'+str(i.version[3])
except Exception:
 pass
u=None
try:
 u=I('os','uos').uname()
except Exception:
 pass
if not v and u:
 v=u.release
w('ver',v)
w('plat',sys.platform)
try:
 w('mach',u.machine)
except Exception:
 w('mach',sys.implementation._machine)
"""
_STEP_UNIQUE_ID = "w('uid',''.join(['%02x'%b for b in I('machine').unique_id()]))\n"
_STEP_MEMORY = "w('mem',I('gc').mem_free())\n"
# About 10 ms of a simple loop, counted in iterations.
_STEP_OPS = """\
n=0
x=0
s=T.ticks_us()
while 1:
 for j in range(100):
  x=x+j
 n=n+100
 e=abs(T.ticks_diff(T.ticks_us(),s))
 if e>=10000 or n>=2000000:
  break
w('ops',n)
w('opus',e)
"""
_STEP_ELAPSED = "w('us',abs(T.ticks_diff(T.ticks_us(),t0)))\n"
_STEP_END = "w('end',1)\n"


def _script(entries: Iterable[tuple[str, str]]) -> str:
    table = _REC_SEP.join(name + _UNIT_SEP + code for name, code in entries)
    # ``ascii()`` gives a literal MicroPython 1.9 parses (\x and \u escapes only).
    return _DRIVER + "try:\n _mps(" + ascii(table) + ")\nfinally:\n del _mps\n"


def probe_script(probes: FeatureProbes | None = None) -> str:
    """The full probe script for ``probes`` (the built-in probes by default)."""
    probes = probes if probes is not None else FeatureProbes()
    steps = [_STEP_START, _STEP_IDENTITY, _STEP_UNIQUE_ID, _STEP_MEMORY]
    tail = [_STEP_OPS, _STEP_ELAPSED, _STEP_END]
    return _script(
        [("", c) for c in steps] + probes.items() + [("", c) for c in tail],
    )


# -- small boards: the same facts in several small exchanges ---------------------------------
#
# A board with about 10 KB free cannot buffer and run the one-shot script (it needs about
# 18 KB). These scripts stand alone, each under 640 bytes, and print the same lines.

# Each small exchange ends with a collection: on an 8 KB board the next exchange must find
# the heap collected before it arrives, not while it is being received and compiled.
_SMALL_WRAP = "try:\n {name}({args})\nfinally:\n del {name}\n__import__('gc').collect()\n"

# Who the board is, in two pieces: the smallest boards (about 8 KB free) run out of memory
# compiling both at once.
_IDENTITY_A = """\
def _mpsa():
 import sys
 p=print
 try:
  v=sys.implementation
  p('@mps:impl='+v.name)
  v=v.version
  p('@mps:ver=%d.%d.%d'%v[:3]+('-'+v[3] if len(v)>3 and v[3] else ''))
 except Exception:
  p('@mps:ver='+__import__('os').uname().release)
 p('@mps:plat='+sys.platform)
"""

_IDENTITY_B = """\
def _mpsb():
 p=print
 try:
  p('@mps:mach='+__import__('os').uname().machine)
 except Exception:
  try:
   p('@mps:mach='+__import__('sys').implementation._machine)
  except Exception:
   pass
 try:
  p('@mps:uid='+''.join(['%02x'%b for b in __import__('machine').unique_id()]))
 except Exception:
  pass
"""

# A feature probe on its own: the code (with ``I`` defined in it) is compiled by exec() when
# it runs, so the exchange itself is a few lines and the board compiles one small piece at
# a time. Probes cannot take more memory than that on a board with 8 KB free.
_IMPORT_HELPER = (
    "def I(*a):\n for m in a:\n  try:\n   return __import__(m)\n  except ImportError:\n"
    "   pass\n raise ImportError(a[0])\n"
)
_SMALL_PROBE = (
    "try:\n exec({code},{{}})\n print('@mps:f={name}')\nexcept Exception as e:\n"
    " if isinstance(e,MemoryError):\n  print('@mps:m={name}')\n__import__('gc').collect()\n"
)
_SMALL_MEMORY = "__import__('gc').collect()\nprint('@mps:mem=%d'%__import__('gc').mem_free())\n"
_OPS_CODE = """\
try:
 T=__import__('utime')
except ImportError:
 T=__import__('time')
n=0
x=0
s=T.ticks_us()
while abs(T.ticks_diff(T.ticks_us(),s))<10000 and n<2000000:
 for j in range(100):
  x=x+j
 n+=100
print('@mps:ops=%d'%n)
print('@mps:opus=%d'%abs(T.ticks_diff(T.ticks_us(),s)))
"""
_SMALL_OPS = "try:\n exec({code},{{}})\nexcept Exception:\n pass\n__import__('gc').collect()\n"


def identity_scripts() -> list[str]:
    """Two short scripts printing who the board is (for the capabilities cache lookup);
    small enough for any board."""
    return [
        _IDENTITY_A + _SMALL_WRAP.format(name="_mpsa", args=""),
        _IDENTITY_B + _SMALL_WRAP.format(name="_mpsb", args=""),
    ]


def small_scripts(probes: FeatureProbes | None = None) -> list[str]:
    """The probe in several small exchanges, for boards too small for :func:`probe_script`:
    identity, free memory, the operations loop, then one exchange per feature probe.
    Their outputs, joined, parse like the one-shot script's."""
    return [script for script, _name in _small_plan(probes)]


_IDENTITY = "identity"
_MEASURE = "measure"


def _small_plan(probes: FeatureProbes | None) -> list[tuple[str, str]]:
    """``(script, what it is)`` for each small exchange: ``"measure"``, ``"identity"`` or
    the name of the feature it probes. Measurements come first, while the heap is as the
    board left it."""
    probes = probes if probes is not None else FeatureProbes()
    plan = [
        (_SMALL_MEMORY, _MEASURE),
        (_SMALL_OPS.format(code=ascii(_OPS_CODE)), _MEASURE),
        *((script, _IDENTITY) for script in identity_scripts()),
    ]
    for name, code in probes.items():
        plan.append((_SMALL_PROBE.format(code=ascii(_IMPORT_HELPER + code), name=name), name))
    return plan


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"@mps:([a-z]+)=([^\r\n]*)")
_VERSION_RE = re.compile(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?")
_UID_RE = re.compile(r"[0-9a-f]*\Z")


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.22.0"``, ``"v1.9.2-34-gd64154c73"``, ``"1.29.0-preview"`` -> ``(1, 22, 0)``.

    ``ValueError`` when ``text`` does not start with a version number.
    """
    m = _VERSION_RE.match(text.strip())
    if m is None:
        raise ValueError(f"not a firmware version: {text!r}")
    parts = tuple(int(g) if g is not None else 0 for g in m.groups())
    return (parts[0], parts[1], parts[2])


@dataclass(frozen=True)
class ProbeOutput:
    """The facts one probe run printed, before the host adds its measurements."""

    implementation: str
    firmware_version: str
    version: tuple[int, int, int]
    device_type: str
    machine: str
    unique_id: str | None
    memory_free: int | None
    features: frozenset[str]
    ops: int | None
    ops_us: int | None
    board_us: int | None
    #: entries that ran out of memory on the board (``-`` for a step of the script)
    memory_errors: frozenset[str] = frozenset()


def _int_value(key: str, value: str) -> int:
    if not value.isdigit() or len(value) > 30:
        raise ProtocolError(f"capability probe: {key}={value!r} is not a number")
    return int(value)


def parse_probe_output(text: str) -> ProbeOutput:
    """Parse what the probe script printed. Lines without the ``@mps:`` marker (a stray
    print, a probe's own output) are ignored; a run that did not reach its end, or a value
    that makes no sense, is a :class:`ProtocolError`."""
    if not isinstance(text, str):
        raise ProtocolError(f"capability probe: expected text, got {type(text).__name__}")
    values: dict[str, str] = {}
    features: set[str] = set()
    memory_errors: set[str] = set()
    for m in _LINE_RE.finditer(text):
        key, value = m.group(1), m.group(2).strip()
        if key == "f":
            if not _NAME_RE.match(value):
                raise ProtocolError(f"capability probe: bad feature name {value!r}")
            features.add(value)
        elif key == "m":
            memory_errors.add(value[:40])
        else:
            values[key] = value
    if "end" not in values:
        raise ProtocolError(
            "capability probe: the board's answer is incomplete (no end marker); "
            "is this a MicroPython board?"
        )
    firmware = values.get("ver", "")
    try:
        version = parse_version(firmware)
    except ValueError:
        raise ProtocolError(
            f"capability probe: cannot read the firmware version from {firmware!r}"
        ) from None
    uid = values.get("uid") or None
    if uid is not None and (not _UID_RE.match(uid) or len(uid) > 128):
        raise ProtocolError(f"capability probe: bad unique id {uid!r}")
    mem = _int_value("mem", values["mem"]) if "mem" in values else None
    ops = _int_value("ops", values["ops"]) if "ops" in values else None
    ops_us = _int_value("opus", values["opus"]) if "opus" in values else None
    board_us = _int_value("us", values["us"]) if "us" in values else None
    return ProbeOutput(
        implementation=values.get("impl", "micropython") or "micropython",
        firmware_version=firmware,
        version=version,
        device_type=values.get("plat", ""),
        machine=values.get("mach", ""),
        unique_id=uid,
        memory_free=mem,
        features=frozenset(features),
        ops=ops,
        ops_us=ops_us,
        board_us=board_us,
        memory_errors=frozenset(memory_errors),
    )


# ---------------------------------------------------------------------------------------------
# The result
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceProfile:
    """How fast the board and its link are, measured during detection (0.0: not measured).

    ``round_trip_ms``: the host-side cost of one exchange (send, compile, reply) beyond the
    time the code ran; ``write_bytes_per_s``: host-to-board throughput (a lower bound: it
    includes the board's compile time); ``ops_per_s``: simple bytecode loop iterations
    (``x = x + j``) per second on the board.
    """

    round_trip_ms: float = 0.0
    write_bytes_per_s: float = 0.0
    ops_per_s: float = 0.0


Refresher = Callable[[float | None], "DeviceCapabilities"]


@dataclass(eq=False)
class DeviceCapabilities:
    """What the board is and what it can do.

    Use :meth:`supports_feature` to ask about a feature; :meth:`refresh_capabilities`
    probes the board again (after a firmware update, say) and updates this object in place.
    """

    firmware_version: str
    version: tuple[int, int, int]
    device_type: str
    machine: str = ""
    implementation: str = "micropython"
    features: frozenset[str] = frozenset()
    performance: PerformanceProfile = field(default_factory=PerformanceProfile)
    memory_free: int | None = None
    unique_id: str | None = None
    _refresh: Refresher | None = field(default=None, init=False, repr=False)
    _on_change: Callable[[DeviceCapabilities], None] | None = field(
        default=None, init=False, repr=False
    )

    def supports_feature(self, feature: str) -> bool:
        """True when the board has ``feature`` (``"threading"``, ``"float"``, ...)."""
        return feature in self.features

    def describe(self) -> str:
        """``"micropython 1.22.0 on esp32"``: how reports name the board."""
        return f"{self.implementation} {self.firmware_version} on {self.device_type}"

    def bind(
        self,
        refresh: Refresher,
        on_change: Callable[[DeviceCapabilities], None] | None = None,
    ) -> None:
        """Attach the function that probes the board again (``refresh(timeout)``), and an
        optional callback run with ``self`` when a refresh finds anything different."""
        self._refresh = refresh
        self._on_change = on_change

    def refresh_capabilities(self, timeout: float | None = None) -> None:
        """Probe the board again and update this object in place."""
        if self._refresh is None:
            raise MpSessionError(
                "these capabilities are not bound to a board: get them from a "
                "DeviceSessionManager to refresh them"
            )
        new = self._refresh(timeout)
        changed = not self.same_board_state(new)
        for name in _FIELDS:
            setattr(self, name, getattr(new, name))
        if changed and self._on_change is not None:
            self._on_change(self)

    def same_board_state(self, other: DeviceCapabilities) -> bool:
        """Equal in everything but the performance measurements and free memory, which
        change from one probe to the next without the board changing."""
        return all(
            getattr(self, n) == getattr(other, n)
            for n in _FIELDS
            if n not in ("performance", "memory_free")
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DeviceCapabilities):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable: refreshed in place

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (for pytest's cache); :meth:`from_dict` reverses it."""
        return {
            "firmware_version": self.firmware_version,
            "version": list(self.version),
            "device_type": self.device_type,
            "machine": self.machine,
            "implementation": self.implementation,
            "features": sorted(self.features),
            "performance": {
                "round_trip_ms": self.performance.round_trip_ms,
                "write_bytes_per_s": self.performance.write_bytes_per_s,
                "ops_per_s": self.performance.ops_per_s,
            },
            "memory_free": self.memory_free,
            "unique_id": self.unique_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeviceCapabilities:
        """Rebuild capabilities from :meth:`to_dict` output; ``ValueError`` if malformed."""
        try:
            version = tuple(int(x) for x in data["version"])
            if len(version) != 3:
                raise ValueError("version must have three parts")
            perf = data["performance"]
            features = data["features"]
            if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
                raise ValueError("features must be a list of names")
            mem = data["memory_free"]
            uid = data["unique_id"]
            strings = [data[k] for k in ("firmware_version", "device_type", "machine")]
            strings.append(data["implementation"])
            if not all(isinstance(s, str) for s in strings):
                raise ValueError("names must be strings")
            if mem is not None and (not isinstance(mem, int) or isinstance(mem, bool)):
                raise ValueError("memory_free must be an integer")
            if uid is not None and not isinstance(uid, str):
                raise ValueError("unique_id must be a string")
            return cls(
                firmware_version=data["firmware_version"],
                version=(version[0], version[1], version[2]),
                device_type=data["device_type"],
                machine=data["machine"],
                implementation=data["implementation"],
                features=frozenset(features),
                performance=PerformanceProfile(
                    round_trip_ms=float(perf["round_trip_ms"]),
                    write_bytes_per_s=float(perf["write_bytes_per_s"]),
                    ops_per_s=float(perf["ops_per_s"]),
                ),
                memory_free=mem,
                unique_id=uid,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed capabilities data: {exc}") from None


_FIELDS = (
    "firmware_version",
    "version",
    "device_type",
    "machine",
    "implementation",
    "features",
    "performance",
    "memory_free",
    "unique_id",
)


@dataclass(frozen=True)
class BoardIdentity:
    """Who a board is, from the short identity script (enough to look up the cache)."""

    implementation: str
    firmware_version: str
    device_type: str
    unique_id: str | None
    machine: str = ""

    def probe_lines(self) -> str:
        """The identity as the probe scripts print it."""
        lines = [
            f"@mps:impl={self.implementation}",
            f"@mps:ver={self.firmware_version}",
            f"@mps:plat={self.device_type}",
            f"@mps:mach={self.machine}",
        ]
        if self.unique_id:
            lines.append(f"@mps:uid={self.unique_id}")
        return "".join(line + "\n" for line in lines)


def cache_key(unique_id: str | None, firmware_version: str, probes: FeatureProbes) -> str | None:
    """The pytest cache key for a board's capabilities, or ``None`` when the board has no
    unique id (then nothing tells two boards apart, so nothing is cached)."""
    if not unique_id:
        return None
    safe_fw = re.sub(r"[^A-Za-z0-9.+-]", "_", firmware_version) or "unknown"
    return f"mpsession/capabilities/{unique_id}_{safe_fw}_{probes.digest()}"


# ---------------------------------------------------------------------------------------------
# Talking to the board
# ---------------------------------------------------------------------------------------------


class ProbeTarget(Protocol):
    """What detection needs from a :class:`~pytest_mpsession.communicator.Communicator`."""

    raw_paste: bool | None

    def exec(
        self,
        code: str | bytes,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
    ) -> str:
        """Run ``code`` on the board and return its stdout."""
        ...


def identify(communicator: ProbeTarget, timeout: float | None = None) -> BoardIdentity:
    """Ask the board who it is (two short exchanges, no feature probes)."""
    text = "".join(communicator.exec(script, timeout=timeout) for script in identity_scripts())
    out = parse_probe_output(text + "@mps:end=1\n")
    return BoardIdentity(
        implementation=out.implementation,
        firmware_version=out.firmware_version,
        device_type=out.device_type,
        unique_id=out.unique_id,
        machine=out.machine,
    )


def detect(
    communicator: ProbeTarget,
    probes: FeatureProbes | None = None,
    timeout: float | None = None,
    identity: BoardIdentity | None = None,
) -> DeviceCapabilities:
    """Find out what the board is and can do, in one exchange.

    A board without raw-paste (``communicator.raw_paste is False``: old firmware, which
    buffers a whole exchange in RAM before compiling it) is asked in several small
    exchanges instead (:func:`small_scripts`), and so is a board that runs out of memory
    with the one-shot script. Before raw-paste is known, run :func:`identify` (a small
    exchange) first so that an old board never receives the big script; pass its result as
    ``identity`` and a small board is not asked again.

    Raises :class:`~pytest_mpsession.errors.DeviceError` if the probe script itself fails on
    the board and :class:`ProtocolError` if its answer cannot be read.
    """
    if getattr(communicator, "raw_paste", None) is False:
        # The raw REPL of old firmware keeps its line buffer at the largest exchange it
        # has seen: a 3 KB script would cost a 16 KB board that RAM for good.
        return _detect_small(communicator, probes, timeout, identity)
    script = probe_script(probes)
    first: list[float] = []

    def on_stdout(_chunk: bytes) -> None:
        # The board prints its first line as soon as the script starts running, so the
        # first output marks the end of sending and compiling.
        if not first:
            first.append(time.monotonic())

    start = time.monotonic()
    try:
        text = communicator.exec(script, timeout=timeout, on_stdout=on_stdout)
    except DeviceError as exc:
        if isinstance(exc, DeviceTimeout) or exc.exc_type != "MemoryError":
            raise
        return _detect_small(communicator, probes, timeout, identity)
    end = time.monotonic()
    out = parse_probe_output(text)
    if out.memory_errors:
        return _detect_small(communicator, probes, timeout, identity)
    return _build(out, communicator.raw_paste, len(script.encode()), start, first, end)


def _detect_small(
    communicator: ProbeTarget,
    probes: FeatureProbes | None,
    timeout: float | None,
    identity: BoardIdentity | None,
) -> DeviceCapabilities:
    """:func:`detect` for small boards: the same facts, in several small exchanges."""
    plan = _small_plan(probes)
    texts: list[str] = []
    if identity is not None:
        # Known already: every exchange saved matters on a board this small.
        plan = [(script, what) for script, what in plan if what != _IDENTITY]
        texts.append(identity.probe_lines())
    sent = 0
    sending = 0.0
    first: list[float] = []
    exchanges = 0

    def on_stdout(_chunk: bytes) -> None:
        if not first:
            first.append(time.monotonic())

    def run(script: str) -> str:
        nonlocal sent, sending, exchanges
        first.clear()
        exchanges += 1
        t0 = time.monotonic()
        text = communicator.exec(script, timeout=timeout, on_stdout=on_stdout)
        if first:
            sent += len(script)
            sending += first[0] - t0
        return text

    start = time.monotonic()
    for script, what in plan:
        try:
            texts.append(run(script))
        except DeviceError as exc:
            if isinstance(exc, DeviceTimeout) or exc.exc_type != "MemoryError":
                raise
            if what == _IDENTITY:
                raise
            # Memory and speed stay unknown; a probe the board cannot even compile is a
            # feature it cannot have.
            if what != _MEASURE:
                texts.append(f"@mps:m={what}\n")
    end = time.monotonic()
    out = parse_probe_output("".join(texts) + "@mps:end=1\n")
    # Timed like one exchange: the loop's board time is the only board time known.
    board_ms = (out.ops_us or 0) / 1000.0
    per_exchange_ms = max((end - start) * 1000.0 - board_ms, 0.0) / max(exchanges, 1)
    write_rate = sent / sending if sending > 0 else 0.0
    caps = _build(out, communicator.raw_paste, 0, start, [], start)
    caps.performance = PerformanceProfile(
        round_trip_ms=round(per_exchange_ms, 3),
        write_bytes_per_s=round(write_rate, 1),
        ops_per_s=caps.performance.ops_per_s,
    )
    return caps


def _build(
    out: ProbeOutput,
    raw_paste: bool | None,
    script_len: int,
    start: float,
    first: Iterable[float],
    end: float,
) -> DeviceCapabilities:
    total_ms = (end - start) * 1000.0
    board_ms = out.board_us / 1000.0 if out.board_us is not None else 0.0
    round_trip_ms = max(total_ms - board_ms, 0.0)
    first_at = next(iter(first), None)
    send_s = (first_at - start) if first_at is not None else round_trip_ms / 1000.0
    write_rate = script_len / send_s if send_s > 0 else 0.0
    ops_per_s = out.ops / (out.ops_us / 1e6) if out.ops and out.ops_us else 0.0
    features = set(out.features)
    if raw_paste:
        features.add("raw_paste")
    return DeviceCapabilities(
        firmware_version=out.firmware_version,
        version=out.version,
        device_type=out.device_type,
        machine=out.machine,
        implementation=out.implementation,
        features=frozenset(features),
        performance=PerformanceProfile(
            round_trip_ms=round(round_trip_ms, 3),
            write_bytes_per_s=round(write_rate, 1),
            ops_per_s=round(ops_per_s, 1),
        ),
        memory_free=out.memory_free,
        unique_id=out.unique_id,
    )


# ---------------------------------------------------------------------------------------------
# Firmware version specifiers (the requires_firmware marker)
# ---------------------------------------------------------------------------------------------

_SPEC_HELP = "write e.g. '>=1.20', '>=1.20,<1.23' or '==1.22.*'"


class FirmwareSpec:
    """A version requirement such as ``">=1.20"``, ``">=1.20,<1.23"`` or ``"==1.22.*"``.

    The grammar and the comparison are PEP 440's, through :mod:`packaging.specifiers`
    (``1.20`` is ``1.20.0``; ``==X.Y.*`` and ``!=X.Y.*`` match by prefix; ``~=1.20`` means
    ``>=1.20, ==1.*``), narrowed to what MicroPython versions are: up to three release
    numbers, no pre-, post- or dev-release parts. A bare version means ``==``. The board's
    version is its firmware string read by :func:`parse_version` (``v1.9.2-34-gd64154c73``
    is ``1.9.2``, ``1.29.0-preview`` is ``1.29.0``).
    """

    def __init__(self, text: str) -> None:
        from packaging.specifiers import InvalidSpecifier, Specifier, SpecifierSet
        from packaging.version import InvalidVersion, Version

        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty firmware requirement {text!r}: write e.g. '>=1.20'")
        self.text = text
        bad = f"cannot parse firmware requirement {text!r}: {_SPEC_HELP}"
        clauses: list[str] = []
        for clause in text.split(","):
            clause = clause.strip()
            if clause[:1].isdigit():
                clause = "==" + clause  # a bare version
            try:
                spec = Specifier(clause)
            except InvalidSpecifier:
                if clause.endswith(".*") and not clause.startswith(("==", "!=")):
                    raise ValueError(
                        f"cannot parse firmware requirement {text!r}: '.*' only goes with == or !="
                    ) from None
                raise ValueError(bad) from None
            if spec.operator == "===":
                raise ValueError(bad)
            try:
                version = Version(spec.version.removesuffix(".*"))
            except InvalidVersion:
                raise ValueError(bad) from None
            if (
                len(version.release) > 3
                or version.epoch
                or version.is_prerelease
                or version.is_postrelease
                or version.local is not None
            ):
                raise ValueError(
                    f"cannot parse firmware requirement {text!r}: MicroPython versions are "
                    f"up to three numbers (X.Y.Z); {_SPEC_HELP}"
                )
            clauses.append(str(spec))
        self._specifiers = SpecifierSet(",".join(clauses))

    def matches(self, version: tuple[int, int, int]) -> bool:
        """True when ``version`` (from :func:`parse_version`) satisfies every clause."""
        from packaging.version import Version

        release = Version(".".join(str(part) for part in version))
        return self._specifiers.contains(release, prereleases=True)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"FirmwareSpec({self.text!r})"
