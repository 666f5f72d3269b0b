"""Adversarial: code on an emulated board, whatever it does, cannot reach the host.

Every route found into the host (issue 13) and every other one tried here must fail, on
every profile, to read a canary file, write a file, run a command, reach the host's
environment or memory, or connect to a listening loopback socket.  The bare ``unix``
profile has the host modules themselves (``os.system``, ``VfsPosix``, ``socket``): there the
operating system's confinement (:mod:`pytest_mpsession.emulator.sandbox`) is what holds.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_mpsession.emulator import PtyBoard, sandbox

pytestmark = pytest.mark.timeout(60)

PROFILES = ["unix", "generic", "esp32", "rp2", "stm32", "legacy"]
DISGUISED = PROFILES[1:]
SECRET = "canary-7f3a9c"
ENV_SECRET = "env-canary-41b2"

needs_kernel = pytest.mark.skipif(
    not sandbox.support().full,
    reason=f"this kernel cannot confine the engine: {sandbox.unavailable_line()}",
)

# How board code gets hold of a host `os` (each route, one way or another, into `H`).
ROUTES = {
    "mpmock._os": "import _mpmock\nH = _mpmock._os",
    "mpmock._vfs": "import _mpmock\nH = _mpmock._vfs",
    "sys.modules board": "import sys\nH = sys.modules['_mpmock_board'].os",
    "import board module": "import _mpmock_board\nH = _mpmock_board.os",
    "machine._mpmock": "import machine\nH = machine._mpmock._os",
    "import os": "import os as H",
    "import uos": "import uos as H",
    "import vfs": "import vfs as H",
    "import usys modules": "import usys\nH = usys.modules.get('os') or __import__('os')",
    "no import hook": (
        "import builtins\n"
        "try:\n del builtins.__import__\nexcept Exception:\n pass\n"
        "import sys\n"
        "for k in list(sys.modules):\n del sys.modules[k]\n"
        "import os as H"
    ),
    "function globals": (
        "H = None\n"
        "import os, sys, machine, time, gc\n"
        "for m in (os, sys, machine, time, gc, __import__('_mpmock')):\n"
        " for n in dir(m):\n"
        "  try:\n   g = getattr(getattr(m, n), '__globals__')\n  except Exception:\n   continue\n"
        "  for v in g.values():\n"
        "   if hasattr(v, 'system') or hasattr(v, 'VfsPosix') or hasattr(v, 'getenv'):\n"
        "    H = v\n"
    ),
    "re-import after del": "import sys, os\ndel sys.modules['os']\nimport os as H",
}

# What the code then tries with it (and without it: plain `open`, `socket`).
ATTACK = """
def _t(label, f):
 try:
  r = f()
  print('DID', label, r)
 except BaseException as e:
  print('NO', label, type(e).__name__)
def _read():
 return open({canary!r}).read()
def _write():
 f = open({written!r}, 'w'); f.write('x'); f.close(); return 'written'
_t('read', _read)
_t('write', _write)
_t('read proc', lambda: open('/proc/{host_pid}/environ').read()[:20])
_t('read mem', lambda: open('/proc/{host_pid}/mem', 'rb').read(1))
_t('read self environ', lambda: open('/proc/self/environ').read())
print('HOST', hasattr(H, 'system') or hasattr(H, 'VfsPosix') or hasattr(H, 'getenv'))
if H is not None:
 _t('system', lambda: H.system('echo ran > {ran}'))
 _t('getenv', lambda: H.getenv('MPMOCK_CANARY_ENV'))
 def _posix():
  V = getattr(H, 'VfsPosix', None) or __import__('vfs').VfsPosix
  (getattr(H, 'mount', None) or __import__('vfs').mount)(V('/'), '/host')
  return open('/host' + {canary!r}).read()
 _t('VfsPosix', _posix)
def _sock():
 import socket
 s = socket.socket()
 s.connect(socket.getaddrinfo('127.0.0.1', {port})[0][-1])
 s.send(b'hello')
 return 'connected'
_t('socket', _sock)
"""


def top_level_blocks(code: str) -> list[str]:
    """``code`` cut before each top-level statement (not before except/else/elif/finally)."""
    blocks: list[str] = []
    for line in code.splitlines():
        cont = line[:1] in (" ", "") or line.split()[0].rstrip(":") in (
            "except",
            "else",
            "elif",
            "finally",
        )
        if blocks and cont:
            blocks[-1] += line + "\n"
        else:
            blocks.append(line + "\n")
    return blocks


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "canary.txt"
    path.write_text(SECRET)
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.setblocking(False)
    yield srv
    srv.close()


def attack(profile: str, setup: str, canary: Path, listener: socket.socket, raw_repl: type) -> str:
    """Run ``setup`` (which sets H) and the attack on a new board; return what it printed,
    after checking on the host that nothing reached it."""
    written = canary.parent / "written.txt"
    ran = canary.parent / "ran.txt"
    guarded = "try:\n" + "".join(" " + line + "\n" for line in setup.splitlines())
    guarded += "except Exception as e:\n print('ROUTE closed', type(e).__name__)\n"
    code = guarded + ATTACK.format(
        canary=str(canary),
        written=str(written),
        ran=str(ran),
        host_pid=os.getpid(),
        port=listener.getsockname()[1],
    )
    # a UART board's line rate (the legacy board's 256-byte receive buffer would overflow
    # at the speed of a pseudo-terminal)
    with PtyBoard(profile, baudrate=115200) as board:
        c = raw_repl(board.path)
        c.enter_raw()
        out, err = c.exec_raw("H = None")
        assert not err
        # one top-level statement an exchange: a 16 KB board compiles no more at once
        text = ""
        for block in top_level_blocks(code):
            out, err = c.exec_raw(block, timeout=20)
            text += (out + err).decode(errors="replace")
    assert SECRET not in text, text
    assert ENV_SECRET not in text, text
    assert not written.exists(), text
    assert not ran.exists(), text
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    # (a 1.9 micro:bit's flat filesystem takes a host path as a file name: legacy writes
    # that file to its flash, as the board does; the host file is checked above)
    flat = profile == "legacy"
    for line in text.splitlines():
        assert not line.startswith("DID read") and (flat or "DID write" not in line), text
        assert not line.startswith("DID socket"), text
    return text


@pytest.fixture(autouse=True)
def env_canary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPMOCK_CANARY_ENV", ENV_SECRET)


@pytest.mark.parametrize("route", list(ROUTES))
@pytest.mark.parametrize("profile", DISGUISED)
def test_no_route_reaches_the_host(
    profile: str, route: str, canary: Path, listener: socket.socket, raw_repl: type
) -> None:
    """On a disguised board no host module is in reach at all (in the language), and the
    operating system stops what would be left."""
    text = attack(profile, ROUTES[route], canary, listener, raw_repl)
    # the routes of issue 13 are gone: no host `os` (system/getenv/VfsPosix) was found
    assert "DID system" not in text and "DID getenv" not in text, text
    assert "HOST False" in text, f"{route}: a host module was reachable: {text}"


@needs_kernel
@pytest.mark.parametrize("route", ["import os", "import vfs", "no import hook"])
def test_unix_port_host_modules_are_confined(
    route: str, canary: Path, listener: socket.socket, raw_repl: type
) -> None:
    """The bare unix port has os.system, VfsPosix and socket: the kernel refuses them."""
    text = attack("unix", ROUTES[route], canary, listener, raw_repl)
    assert "NO read" in text
    if route != "import vfs":
        assert "NO system" in text or "DID system 32512" in text or "DID system -1" in text, text
        assert "DID getenv None" in text, text  # an empty environment


@needs_kernel
@pytest.mark.parametrize("profile", PROFILES)
def test_engine_process_is_confined(profile: str) -> None:
    """Seen from the host: the engine runs with no_new_privs, a seccomp filter, no
    capabilities, an empty environment."""
    with PtyBoard(profile) as board:
        pid = board.engine_pid
        assert pid is not None
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        assert fields["NoNewPrivs"].strip() == "1"
        assert fields["Seccomp"].strip() == "2"
        assert int(fields["CapEff"], 16) == 0
        assert ENV_SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()


def test_unavailable_kernel_is_one_line() -> None:
    none = sandbox.Support(0, False, None)
    line = sandbox.unavailable_line(none)
    assert line is not None and "\n" not in line
    assert "Landlock" in line and "seccomp" in line
    assert sandbox.unavailable_line(sandbox.Support(7, True, "x86_64")) is None


def test_seccomp_program_is_well_formed() -> None:
    """Every jump of the filter lands inside it and it ends in returns."""
    for arch in ("x86_64", "aarch64"):
        for exec_once in (False, True):
            prog = sandbox._bpf(arch, exec_once)
            n = len(prog) // 8
            import struct

            for i in range(n):
                code, jt, jf, _k = struct.unpack_from("=HBBI", prog, i * 8)
                if code & 0x07 == 0x05:  # a jump
                    assert i + 1 + jt < n and i + 1 + jf < n
            assert struct.unpack_from("=H", prog, (n - 1) * 8)[0] == 0x06
