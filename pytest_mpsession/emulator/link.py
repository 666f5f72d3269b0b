"""The link: a relay between the host side of an emulated board and its engine.

It changes only what a board does differently from the unix port:

- a soft reset (Ctrl-D on an empty raw-REPL line, ``sys.exit()``) ends the unix port: the
  relay restarts it and shows the reboot as a board does (``MPY: soft reboot``, back in the
  raw REPL if it was there);
- a Ctrl-C byte is not read by the unix port while code runs: the relay turns it into SIGINT
  then, and only then (at a prompt SIGINT would end the process, so there the byte goes through);
- the banner and, for old boards, CRLF line ends, no raw-paste and a small receive buffer;
- faults from the board's options: line-rate throttling, latency, garbage, dropped bytes,
  disconnects, spontaneous resets and hangs.

To do so it follows the raw REPL from the bytes themselves (prompt, line, raw-paste, running)
using :mod:`pytest_mpsession.protocol.constants`.  Everything happens on one thread per board,
blocked in ``select`` with deadlines; the engine processes are started from that thread, so
the kernel kills them (``PR_SET_PDEATHSIG``) if it ever dies.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import hashlib
import os
import re
import select
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from pytest_mpsession.emulator import sandbox
from pytest_mpsession.emulator.engine import (
    ENGINE_ENV,
    BoardEngine,
    EmulatorError,
    Engine,
    exec_paths,
    find_engine,
)
from pytest_mpsession.emulator.faults import Faults
from pytest_mpsession.emulator.flash import FlashImage
from pytest_mpsession.emulator.legacy_link import CrlfOutput, ReceiveBuffer
from pytest_mpsession.emulator.options import Options
from pytest_mpsession.emulator.profiles import Profile
from pytest_mpsession.emulator.qemu import QemuMachine
from pytest_mpsession.protocol.constants import (
    CTRL_A,
    CTRL_B,
    CTRL_C,
    CTRL_D,
    CTRL_E,
    FRIENDLY_PROMPT,
    RAW_REPL_BANNER,
    RAW_REPL_PROMPT,
)

__all__ = ["Link"]

# the engine of a board: the unix port, or real firmware in QEMU (profile.qemu_machine)
_Engine = BoardEngine

BOARD_DIR = Path(__file__).parent / "board"

_RAW_SPECIAL = re.compile(rb"[\x01-\x05]")
_FRIENDLY_SPECIAL = re.compile(rb"[\x01\x02\x03\x04\x05\x08\x7f\r\n]")
_PASTE_END = re.compile(rb"[\x03\x04]")
_ENGINE_BANNER = re.compile(rb"MicroPython [^\r\n]*\r\n")

_C, _D, _A, _B, _E = CTRL_C[0], CTRL_D[0], CTRL_A[0], CTRL_B[0], CTRL_E[0]
# machine.reset_cause() values, passed to each engine start
_CAUSE_POWER, _CAUSE_HARD, _CAUSE_WDT, _CAUSE_DEEPSLEEP, _CAUSE_SOFT = 1, 2, 3, 4, 5

# extra engine heap for the board's own set-up; returned to the board's size by a ballast
_SETUP_HEAP = 160 * 1024
# run in the raw REPL at the first prompt of a disguised board (see board/_mpmock.py):
# mount the flash, set the reset cause, size the RAM; then a second pass on the RAM
# (the first prints S when the flash has boot.py, or main.py to run, see _SCRIPTS)
_ACTIVATE = b"__import__('_mpmock')._activate(%d,%d)" + CTRL_D + b"__import__('_mpmock')._trim()"
# boot.py, then main.py, as a board runs them at reset: in the REPL's globals, their output
# and tracebacks on the console
_SCRIPTS = b"__import__('_mpmock')._run_scripts(%d,globals())"
# the out-of-sight check after an interrupt by SIGINT: does the interpreter still compile?
_PROBE = b"pass"
# while a Ctrl-C waits for the interpreter's SIGINT handler: how often to look, how long
_INTR_POLL = 0.001
_INTR_WAIT = 2.0
# pull mode: how long the engine's output may wait for the host's own pump() before the
# relay forwards it itself
_PULL_GRACE = 0.002
# how long to wait for an engine to reach its prompt before calling the board broken
_BOOT_TIMEOUT = 10.0
# most engine output held back while waiting for the banner after a Ctrl-B, and how long
_BANNER_HOLD_MAX = 4096
_BANNER_WAIT = 0.5
# engine output kept back when the host does not read (the board then blocks, as over USB)
_OUT_BACKLOG = 64 * 1024
# a throttled line whose board has not taken the previous bytes looks again this much later
_BACKLOG_POLL = 0.001


def _hint() -> str:
    env = os.environ.get(ENGINE_ENV, "").strip()
    if env:
        return f" ({ENGINE_ENV}={env!r}: is it a MicroPython unix port?)"
    return ""


class Link:
    """One emulated board: its engine process, its REPL state and the relay to the host.

    The host side is a file descriptor given to :meth:`attach` (the master of the PTY a
    :class:`~pytest_mpsession.emulator.PtyBoard` serves, or one end of the socket pair behind
    an ``mpmock://`` Serial).  ``on_drop`` is called (from the relay thread) when the link
    drops as a USB board's does; the host side is then detached until :meth:`attach`.
    """

    def __init__(
        self,
        profile: Profile,
        options: Options,
        *,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        if profile.baudrate and not options.baudrate:
            options = dataclasses.replace(options, baudrate=profile.baudrate)
        self.profile = profile
        self.options = options
        self.on_drop = on_drop
        self._prefix = [] if profile.qemu_machine else find_engine()
        # no throttling, latency, byte counting or line-end rewriting: output passes as is
        self._plain = not (
            profile.crlf
            or options.baudrate
            or options.latency_ms
            or options.disconnect_after is not None
        )
        #: counters a test can read: engine starts, soft and hard resets seen, faults
        self.stats: collections.Counter[str] = collections.Counter()
        self._faults = Faults(options, self.stats)
        self._rxbuf = (
            ReceiveBuffer(profile.rx_buffer, profile.rx_rate) if profile.rx_buffer else None
        )
        self._crlf = CrlfOutput()
        self._dir = tempfile.mkdtemp(prefix=f"mpmock-{profile.name}-")
        self._flash = os.path.abspath(options.flash or os.path.join(self._dir, "flash.img"))
        self._image: FlashImage | None = None
        self._qemu: QemuMachine | None = None
        if profile.qemu_machine:
            try:
                self._qemu = QemuMachine(profile, options.flash, self._dir)
            except BaseException:
                shutil.rmtree(self._dir, ignore_errors=True)
                raise
            self._flash = self._qemu.flash or ""
        # machine.unique_id(): the same board every run (per profile and flash image), so a
        # client's per-board caches (the capabilities) are reused, not written anew each time
        ident = f"{profile.name}\0{self._flash if options.flash else ''}".encode()
        self._uid = hashlib.sha256(ident).digest()[:8]
        self._boot_script = self._write_boot_script()
        self._cause = _CAUSE_POWER
        if profile.flash_size and profile.disguise and self._qemu is None:
            try:
                self._image = FlashImage(
                    self._flash, profile.flash_size, profile.block_size, profile=profile.name
                )
            except BaseException:
                shutil.rmtree(self._dir, ignore_errors=True)
                raise
        # the engine's confinement (see sandbox.py): its flash image, its own modules and
        # boot script, and for the bare unix port a folder of its own as its filesystem
        self._cwd: str | None = None
        tree: list[str] = []
        if not profile.disguise:
            self._cwd = os.path.join(self._dir, "fs")
            os.mkdir(self._cwd)
            tree.append(self._cwd)
        ro, x = exec_paths(self._prefix)
        self._policy = sandbox.policy(
            read_write=[self._flash] if self._image is not None else [],
            read_only=[str(BOARD_DIR), self._boot_script, *ro],
            execute=x,
            tree=tree,
        )
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._cmd_lock = threading.Lock()
        self._lock = threading.RLock()
        self._pull = False
        self._pull_check_at = 0.0  # pull mode: when the relay looks at the engine again

        self._cmds: list[tuple[str, object]] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._host_fd = -1
        self._engine: _Engine | None = None
        self._ctl_r = -1
        self._ctl_data = b""
        self._spare: tuple[_Engine, int] | None = None
        self._spare_buf = bytearray()
        self._spare_text: bytes | None = None
        self._spare_failed = self._qemu is not None  # a new machine boots in ~0.1 s
        # bytes on their way, with the time they are due at the other end
        self._inq: collections.deque[tuple[float, bytes]] = collections.deque()
        self._outq: collections.deque[tuple[float, bytes]] = collections.deque()
        self._in_free_at = 0.0  # line-rate bookkeeping, host -> board
        # how late the relay delivered the last host slice: the rest of the queue is due that
        # much later (a line never bursts above its rate to catch up; a real firmware's small
        # receive buffer would overflow)
        self._in_late = 0.0
        self._out_free_at = 0.0  # board -> host
        self._to_engine = bytearray()
        self._held_rx = bytearray()  # host bytes that arrived while the board was booting
        self._run_held = bytearray()  # REPL control bytes (and after) sent while code ran
        # REPL state, followed from the bytes
        self._mode = "friendly"
        self._reset_exchange_state()
        self._hung = False
        self._mute_reply = False
        # the exchange a pending Ctrl-C belongs to (raw REPL): it is dropped when that
        # exchange ends first, as a board drops an interrupt that came too late for its code
        # (pyexec clears a pending KeyboardInterrupt after the code), never carried into the
        # next exchange's code
        self._exchange_no = 0
        self._pending_for = 0
        # the unix port's SIGINT is asynchronous (a longjmp from the signal handler): if it
        # lands inside the garbage collector the heap stays locked.  After each interrupt by
        # SIGINT the relay checks, out of the host's sight, that the interpreter still
        # compiles code, and restarts it if not (see _probe_done).
        self._probes = 0
        self._probe_buf = bytearray()
        self._booting = ""
        self._boot_stage = ""
        self._boot_target = "friendly"
        self._boot_buf = bytearray()
        self._boot_text = b""
        self._scripts_shown = 0
        self._prefix_done = False
        self._boot_deadline = 0.0
        self._thread = threading.Thread(
            target=self._run, name=f"mpmock-{profile.name}", daemon=True
        )

    # ----------------------------------------------------------------- host-facing API

    def start(self, timeout: float = _BOOT_TIMEOUT) -> None:
        """Start the relay thread and wait until the board has booted."""
        self._thread.start()
        if not self._ready.wait(timeout):
            self.close()
            raise EmulatorError(f"the emulated board did not boot within {timeout:g} s")
        if self._error is not None:
            err = self._error
            self.close()
            raise EmulatorError(f"the emulated board failed to start: {err}") from err

    def attach(self, fd: int) -> None:
        """Serve the host on ``fd`` (non-blocking); replaces any previous host side."""
        os.set_blocking(fd, False)
        self._command("attach", fd)

    def detach(self) -> None:
        """Stop serving the host: the board keeps running, its output is lost.

        Returns once the relay has let go of the host descriptor (it may then be closed).
        """
        done = threading.Event()
        self._command("detach", done)
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            done.wait(5.0)

    # The mpmock Serial drives the hot path from its own thread (no hop through the relay
    # thread per exchange): it hands the host's bytes in with feed() and, while it waits
    # for an answer, takes the engine's output with pump().  The relay thread keeps the rest
    # (timers, resets, the spare engine) and still forwards the engine's output if nobody
    # pumps it within _PULL_GRACE (a client that only select()s on the Serial's fileno()).
    # One lock keeps the two threads apart.

    def set_pull(self, pull: bool) -> None:
        """Whether the host side takes the engine's output itself with pump()."""
        with self._lock:
            self._pull = pull
        self._wake()

    def feed(self, data: bytes) -> None:
        """Bytes written by the host (instead of writing them to the host descriptor)."""
        with self._lock:
            if self._closed:
                return
            self._host_bytes(data)
            # the relay thread moves what the engine's input could not take yet
            if self._inq or self._outq or self._booting or self._pending_intr or self._to_engine:
                self._wake()

    def pump(self) -> None:
        """Take what the engine has printed, if anything, without blocking."""
        with self._lock:
            eng = self._engine
            if eng is not None and eng.fd >= 0 and not self._closed:
                self._read_engine(eng)
                if self._outq or self._booting or self._probing or self._pending_intr:
                    self._wake()

    @property
    def engine_fd(self) -> int:
        """The current engine's PTY master (readable when the board printed something)."""
        eng = self._engine
        return eng.fd if eng is not None else -1

    @property
    def engine_pid(self) -> int | None:
        """The current engine's process id (None while no engine runs)."""
        eng = self._engine
        return eng.pid if eng is not None and eng.fd >= 0 else None

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass

    def hard_reset(self) -> None:
        """Pulse the reset line: RAM gone, flash kept, the board boots to the friendly REPL."""
        self._command("hard_reset", None)

    @property
    def attached(self) -> bool:
        """Whether a host side is connected (False once it closed its end, or the link
        dropped)."""
        return self._host_fd >= 0 or any(name == "attach" for name, _ in self._cmds)

    def fault_next(self, fault: str) -> None:
        """Make the next exchange (the next code the board is given to run) meet ``fault``:
        ``"reset"``, ``"hang"`` or ``"disconnect"``, as the URL's options of the same names
        do at random. For tests that need a fault at one exact place; called again, the
        exchange after gets the next one."""
        with self._lock:
            self._faults.force(fault)

    @property
    def hung(self) -> bool:
        """True while a ``hang`` fault keeps the board from answering."""
        return self._hung

    @property
    def flash_path(self) -> str:
        """The host file holding the board's flash image."""
        return self._flash

    def close(self) -> None:
        """End the board: the engine process is killed, the relay thread joined."""
        if self._closed:
            return
        self._closed = True
        self._command("close", None)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._image is not None:
            self._image.close()
        if self._qemu is not None:
            self._qemu.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _command(self, name: str, arg: object) -> None:
        with self._cmd_lock:
            self._cmds.append((name, arg))
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass

    # --------------------------------------------------------------------- the thread

    def _run(self) -> None:
        try:
            self._boot("power")
            self._loop()
        except BaseException as exc:  # reported to start(); the board is dead either way
            self._error = exc
            self._ready.set()
        finally:
            self._kill_engine()
            self._kill_spare()
            if self._host_fd >= 0:
                self._host_fd = -1

    def _loop(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._deliver(now)
                if self._booting and now > self._boot_deadline:
                    raise EmulatorError("the MicroPython engine did not reach its prompt")
                if self._pending_intr:
                    self._retry_interrupt(now)
                due = [q[0][0] for q in (self._outq,) if q]
                if self._inq:
                    due.append(self._inq[0][0] + self._in_late)
                if self._booting:
                    due.append(self._boot_deadline)
                if self._pending_intr:
                    due.append(now + _INTR_POLL)
                if self._banner_hold is not None:
                    if now >= self._banner_deadline:
                        self._flush_banner_hold()
                    else:
                        due.append(self._banner_deadline)
                rlist = [self._wake_r]
                wlist: list[int] = []
                eng = self._engine
                lazy = self._pull and not self._booting and not self._probing
                if eng is not None and eng.fd >= 0:
                    if self._out_pending() < _OUT_BACKLOG:
                        if not lazy or now >= self._pull_check_at:
                            rlist.append(eng.fd)
                        else:
                            due.append(self._pull_check_at)
                    if self._to_engine:
                        wlist.append(eng.fd)
                timeout = max(0.0, min(due) - now) if due else None
                if self._ctl_r >= 0:
                    rlist.append(self._ctl_r)
                spare = self._spare
                if spare is not None and self._spare_text is None:
                    rlist.append(spare[0].fd)
                host_fd = self._host_fd
                if host_fd >= 0:
                    rlist.append(host_fd)
                    if self._outq and self._outq[0][0] <= now:
                        wlist.append(host_fd)
            try:
                r, w, _ = select.select(rlist, wlist, [], timeout)
            except OSError:
                continue  # a descriptor was closed under us (a detach or reset is queued)
            with self._lock:
                if self._wake_r in r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    with self._cmd_lock:
                        cmds, self._cmds = self._cmds, []
                    for name, arg in cmds:
                        if name == "close":
                            return
                        self._do_command(name, arg)
                if self._ctl_r >= 0 and self._ctl_r in r:
                    self._read_ctl()
                if spare is not None and spare is self._spare and spare[0].fd in r:
                    self._read_spare()
                if eng is not None and eng is self._engine and eng.fd >= 0:
                    if eng.fd in w:
                        self._flush_to_engine()
                    if eng.fd in r:
                        now = time.monotonic()
                        if lazy and now >= self._pull_check_at + _PULL_GRACE:
                            # first sight: leave it to the host's pump() for a moment
                            self._pull_check_at = now + _PULL_GRACE
                        else:
                            self._read_engine(eng)
                if host_fd >= 0 and host_fd == self._host_fd and host_fd in r:
                    self._read_host()

    def _do_command(self, name: str, arg: object) -> None:
        if name == "attach":
            assert isinstance(arg, int)
            self._host_fd = arg
            if self._hung:  # reopening the port of a hung board: it is reset (re-enumerated)
                self._hard_reset(drop=False)
        elif name == "detach":
            self._host_fd = -1
            if isinstance(arg, threading.Event):
                arg.set()
        elif name == "hard_reset":
            self._hard_reset(drop=False)

    # ------------------------------------------------------------------ engine process

    def _write_boot_script(self) -> str:
        """The script the engine runs (``-i``) before its REPL: the board around it."""
        p = self.profile
        cfg = {
            "name": p.name,
            "disguise": p.disguise,
            "platform": p.platform,
            "version": p.version,
            "sysname": p.sysname,
            "nodename": p.nodename,
            "release": p.release_string(),
            "uversion": p.version_string(),
            "machine": p.machine,
            "heap": p.heap,
            "free": p.free_at_boot(),
            "flash": self._flash if p.flash_size else "",
            "flash_size": p.flash_size,
            "block_size": p.block_size,
            "missing": list(p.missing),
            "modules": list(p.modules),
            "freq": p.freq,
            "emitters": p.emitters,
            "uid": self._uid,
            "board_dir": str(BOARD_DIR),
        }
        path = os.path.join(self._dir, "boot.py")
        with open(path, "w") as f:
            f.write(f"_CFG = {cfg!r}\n")
            f.write((BOARD_DIR / "_boot.py").read_text())
        return path

    def _engine_heap(self) -> int:
        # A disguised board needs room to set itself up (compiling its modules); what is
        # left over is then taken by a ballast block so the board has the profile's RAM.
        if not self.profile.disguise:
            return self.profile.heap
        return self.profile.heap + _SETUP_HEAP

    def _new_engine(self) -> tuple[_Engine, int]:
        if self._qemu is not None:
            qemu = self._qemu.start()
            self.stats["engine_starts"] += 1
            return qemu, qemu.ctl_r
        ctl_r, ctl_w = os.pipe()
        os.set_blocking(ctl_r, False)
        args = ["-X", f"heapsize={self._engine_heap()}", "-i", self._boot_script, str(ctl_w), "0"]
        try:
            eng = Engine(self._prefix, args, pass_fds=(ctl_w,), policy=self._policy, cwd=self._cwd)
        except BaseException:
            os.close(ctl_r)
            raise
        finally:
            os.close(ctl_w)
        self.stats["engine_starts"] += 1
        return eng, ctl_r

    def _spawn(self) -> bytes | None:
        """Make a booted engine current: the spare if one is ready (returns what it printed
        while booting), else a new one (None: its start-up text is still to come)."""
        self._kill_engine()
        self._ctl_data = b""
        if self._spare is not None:
            # ready, or still booting: either way it is further along than a new engine
            (self._engine, self._ctl_r) = self._spare
            text = self._spare_text if self._spare_text is not None else bytes(self._spare_buf)
            self._spare, self._spare_text = None, None
            self.stats["spares_used"] += 1
            return text
        self._engine, self._ctl_r = self._new_engine()
        return None

    def _start_spare(self) -> None:
        """Boot the next engine now, so that a reset only has to activate it."""
        if self._spare is None and not self._spare_failed:
            self._spare = self._new_engine()
            self._spare_buf = bytearray()
            self._spare_text = None

    def _read_spare(self) -> None:
        assert self._spare is not None
        eng = self._spare[0]
        try:
            data = os.read(eng.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._spare_buf += data
        if data and self._spare_buf.endswith(FRIENDLY_PROMPT):
            if b"Traceback" in self._spare_buf:
                data = b""  # a broken spare: the next reset boots the normal way and says why
            else:
                self._spare_text = bytes(self._spare_buf)
                return
        if not data:
            self._kill_spare()
            self._spare_failed = True

    def _kill_spare(self) -> None:
        if self._spare is not None:
            self._spare[0].kill()
            os.close(self._spare[1])
            self._spare = None
            self._spare_text = None

    def _kill_engine(self) -> None:
        if self._engine is not None:
            self._engine.kill()
            self._engine = None
        if self._ctl_r >= 0:
            os.close(self._ctl_r)
            self._ctl_r = -1
        self._to_engine.clear()

    def _read_ctl(self) -> None:
        try:
            data = os.read(self._ctl_r, 256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            os.close(self._ctl_r)
            self._ctl_r = -1
            return
        self._ctl_data += data
        # the board asked for a reset (machine.reset(), soft_reset(), deepsleep()): it waits
        # in a sleep loop until the relay ends it, as a real reset never returns
        code = self._ctl_data[-1:]
        if code in (b"S", b"H", b"D"):
            self._drain_engine()
        if code == b"S":
            self._kill_engine()
            self._boot("soft")
        elif code in (b"H", b"D"):
            self._cause = _CAUSE_DEEPSLEEP if code == b"D" else _CAUSE_HARD
            self._hard_reset(drop=self.profile.usb, cause=self._cause)

    def _drain_engine(self) -> None:
        """What the board printed before it asked for a reset reaches the host first."""
        eng = self._engine
        if eng is None or eng.fd < 0:
            return
        try:
            data = os.read(eng.fd, 65536)
        except OSError:
            return
        if data:
            self._from_engine(data)

    def _read_engine(self, eng: _Engine) -> None:
        try:
            data = os.read(eng.fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.ECONNRESET):  # a PTY's or a socket's end
                raise
            data = b""
        if data:
            self._from_engine(data)
        else:
            self._engine_ended()

    def _write_engine(self, data: bytes) -> None:
        if not data:
            return
        self._to_engine += data
        self._flush_to_engine()

    def _flush_to_engine(self) -> None:
        eng = self._engine
        if eng is None or eng.fd < 0 or not self._to_engine:
            return
        try:
            n = os.write(eng.fd, self._to_engine)
        except BlockingIOError:
            return
        except OSError:
            self._to_engine.clear()  # the engine is gone; its EOF is handled on read
            return
        del self._to_engine[:n]

    def _engine_ended(self) -> None:
        """The engine process ended: show it as the board's soft or hard reset."""
        eng = self._engine
        if self._ctl_r >= 0:
            self._read_ctl()  # a reset the board asked for just before it ended
            if self._engine is not eng:
                return
        if self._booting and self._boot_stage == "prompt":
            # it never reached its prompt: not a MicroPython unix port, or it cannot run here
            text = bytes(self._boot_buf).decode(errors="replace").strip().splitlines()
            why = f": {text[-1].strip()}" if text else ""
            raise EmulatorError(f"the MicroPython engine ended before its prompt{why}{_hint()}")
        self._kill_engine()
        # Ctrl-D on an empty line, sys.exit(), or an engine that died: a board reboots
        # softly and comes back where it was (raw or friendly REPL)
        self._boot("soft")

    def _hard_reset(self, *, drop: bool, cause: int = 2) -> None:
        self._kill_engine()
        self._cause = cause
        self._hung = False
        self._mute_reply = False
        self._inq.clear()
        self._held_rx.clear()
        self._run_held.clear()
        self.stats["hard_resets"] += 1
        if drop and self._host_fd >= 0:
            self._drop_link()
        self._boot("hard")

    def _drop_link(self) -> None:
        self._host_fd = -1
        self._outq.clear()
        self.stats["link_drops"] += 1
        if self.on_drop is not None:
            self.on_drop()

    def _boot(self, kind: str) -> None:
        """(Re)start the engine; its start-up text is replaced by the board's when it is up."""
        if kind == "soft":
            self.stats["soft_resets"] += 1
            self._cause = _CAUSE_SOFT
            target = self._mode
        elif kind == "heal":
            self.stats["soft_resets"] += 1
            self._cause = _CAUSE_SOFT
            target = "raw"
        else:
            target = "friendly"
        if self._run_held:  # kept while code ran: read by the REPL after the reboot
            self._held_rx[:0] = self._run_held
            self._run_held.clear()
        text = self._spawn()
        self._prefix_done = False
        self._booting = kind
        self._boot_target = target
        self._boot_stage = "prompt"
        self._boot_buf = bytearray()
        self._boot_deadline = time.monotonic() + _BOOT_TIMEOUT
        self._reset_exchange_state()
        if text is not None:
            self._boot_output(text)

    def _reset_exchange_state(self) -> None:
        """What the relay follows of the REPL's current line and exchange: nothing, as
        after power-on or a reboot (a new engine knows nothing of the old one's code)."""
        self._line_len = 0
        self._ctrl_e = 0  # 1: held Ctrl-E at line start, 2: held Ctrl-E 'A'
        self._paste = False
        self._fpaste = False  # the friendly REPL's paste mode (Ctrl-E)
        self._running = False
        self._stdin_used = False  # the host sent the running code bytes (its stdin)
        self._eots = 0  # end-of-transmission bytes still expected before the prompt
        self._crlf.reset()  # (a board's line ends: nothing of a code's is on its way)
        self._banner_hold: bytearray | None = None
        self._banner_deadline = 0.0
        # a Ctrl-C that came while code was starting (after "OK", before the interpreter's
        # SIGINT handler is installed): retried until the handler is there or the code ended
        self._pending_intr = 0.0
        # see _probe_done: an interrupt by SIGINT is followed by a hidden health probe
        self._sigint_used = False
        self._probing = False

    def _boot_output(self, data: bytes) -> None:
        """Follow the engine's start-up; the host sees only the board's boot at the end.

        Stages: ``prompt`` (the engine's banner and ``>>> ``), then for a disguised board
        ``shrink`` (the raw REPL runs the heap ballast, so the board's RAM is measured at a
        real prompt), then ``raw`` or ``friendly`` to end where the board must be.
        """
        self._boot_buf += data
        buf = bytes(self._boot_buf)
        stage = self._boot_stage
        if stage == "prompt":
            if not buf.endswith(FRIENDLY_PROMPT):
                return
            if b"Traceback" in buf:
                # the board set-up failed: a bug or a bad profile, not something to hide
                raise EmulatorError(
                    f"the emulated board's set-up failed: {buf.decode(errors='replace')}"
                )
            self._boot_text = self._rewrite_banner(buf)
            if self.profile.stack_limit and self._engine is not None:
                self._engine.set_stack_limit(self.profile.stack_limit)
            if self.profile.disguise:
                self._boot_stage = "shrink"
                self._boot_buf = bytearray()
                # (at power-on the flash is looked at only when it is the user's own image)
                scripts = (
                    -1 if self._booting == "power" and not self.options.flash else self._run_main()
                )
                self._write_engine(CTRL_A + _ACTIVATE % (self._cause, scripts) + CTRL_D)
                return
            if self._boot_target == "raw":
                self._boot_stage = "raw"
                self._boot_buf = bytearray()
                self._write_engine(CTRL_A)
                return
            text = self._boot_text
        elif stage == "shrink":
            if (
                not buf.endswith(CTRL_D + RAW_REPL_PROMPT)
                or buf.count(CTRL_D + RAW_REPL_PROMPT) < 2
            ):
                return
            if b"Traceback" in buf:
                raise EmulatorError(
                    f"the emulated board's set-up failed: {buf.decode(errors='replace')}"
                )
            self._boot_buf = bytearray()
            if b"OKS" in buf:
                # boot.py / main.py on the flash: run them as the board does, in sight
                self._boot_stage = "scripts"
                self._scripts_shown = 0
                self._boot_prefix(sent=False)
                if self._booting == "power":
                    self._ready.set()  # (a main.py that runs for ever is a booted board)
                self._write_engine(_SCRIPTS % self._run_main() + CTRL_D)
                return
            if self._boot_target == "raw":
                text = RAW_REPL_BANNER + RAW_REPL_PROMPT
            else:
                self._boot_stage = "friendly"
                self._write_engine(CTRL_B)
                return
        elif stage == "scripts":
            payload = buf[2:] if buf.startswith(b"OK") else b""
            cut = payload.find(CTRL_D)
            shown = payload if cut < 0 else payload[:cut]
            if len(shown) > self._scripts_shown and self._booting != "power":
                self._emit(shown[self._scripts_shown :])
            self._scripts_shown = len(shown)
            if not buf.endswith(CTRL_D + RAW_REPL_PROMPT) or buf.count(CTRL_D) < 2:
                return
            self._boot_buf = bytearray()
            if self._boot_target == "raw":
                text = RAW_REPL_BANNER + RAW_REPL_PROMPT
            else:
                self._boot_stage = "friendly"
                self._write_engine(CTRL_B)
                return
        elif stage == "friendly":
            if not buf.endswith(FRIENDLY_PROMPT):
                return
            text = self._boot_text
        else:
            if not buf.endswith(RAW_REPL_BANNER + RAW_REPL_PROMPT):
                return
            text = RAW_REPL_BANNER + RAW_REPL_PROMPT
        kind = self._booting
        prefix = self._boot_prefix(sent=True)
        self._booting = ""
        self._mode = self._boot_target
        if kind != "power":
            # at power-on nobody has the port open yet: a board's first banner is not seen
            self._emit(prefix + text)
        self._ready.set()
        if kind != "power":
            # a board that was reset once will likely be reset again: have the next engine
            # booted by then (boards that never reset never pay for a spare)
            self._start_spare()
        if self._held_rx:
            held = bytes(self._held_rx)
            self._held_rx.clear()
            self._board_rx(held)

    def _run_main(self) -> int:
        """Whether this boot runs main.py: when it ends in the friendly REPL (a raw-REPL soft
        reset skips it), or always on boards of that age (the micro:bit)."""
        return int(self._boot_target == "friendly" or self.profile.main_after_raw_reset)

    def _boot_prefix(self, *, sent: bool) -> bytes:
        """The reboot line of a soft reset, emitted before boot.py's output (sent=False) or
        returned for the end of the boot unless that happened."""
        if self._booting not in ("soft", "heal") or self._prefix_done:
            return b""
        line = self.profile.soft_reboot.encode() + b"\r\n"
        if sent:
            return line
        self._prefix_done = True
        self._emit(line)
        return b""

    def _rewrite_banner(self, text: bytes) -> bytes:
        if not self.profile.disguise:
            return text
        line = self.profile.banner_line() + b"\r\n"
        return _ENGINE_BANNER.sub(lambda _m: line, text, count=1)

    # ---------------------------------------------------------------- board -> host

    def _from_engine(self, data: bytes) -> None:
        if (
            self._plain
            and not self._booting
            and not self._probing
            and self._banner_hold is None
            and not self._mute_reply
            and not self._hung
            and not self._outq
            and self._host_fd >= 0
        ):
            # the hot path (an exchange's reply on a fault-free link): straight to the host
            if self._running:
                self._track_reply_end(data)
            try:
                n = os.write(self._host_fd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                self._host_fd = -1
                return
            if n < len(data):
                self._queue_out(time.monotonic(), data[n:])
            if self._run_held and not self._running:
                self._replay_run_held()
            return
        if self._booting:
            self._boot_output(data)
            return
        if self._probing:
            self._probe_buf += data
            if self._probe_buf.endswith(CTRL_D + RAW_REPL_PROMPT):
                self._probe_done()
            return
        if self._banner_hold is not None:
            # After Ctrl-B the engine prints its banner: hold it until the prompt to swap it.
            self._banner_hold += data
            # the prompts of bytes sent before the Ctrl-B (a CR, a Ctrl-C) may come first:
            # hold until the prompt after the banner itself (bounded in size and time, should
            # none come: a Ctrl-B the engine took as a key of its line editor)
            m = _ENGINE_BANNER.search(self._banner_hold)
            if (m is None or self._banner_hold.find(FRIENDLY_PROMPT, m.end()) < 0) and len(
                self._banner_hold
            ) < _BANNER_HOLD_MAX:
                return
            data = self._rewrite_banner(bytes(self._banner_hold))
            self._banner_hold = None
        if self._running:
            self._track_reply_end(data)
        self._emit(data)
        if self._run_held and not self._running:
            self._replay_run_held()

    def _hold_banner(self) -> None:
        self._banner_hold = bytearray()
        self._banner_deadline = time.monotonic() + _BANNER_WAIT

    def _flush_banner_hold(self) -> None:
        """No banner came in time: what was held goes to the host as it is."""
        if self._banner_hold is None:
            return
        data = bytes(self._banner_hold)
        self._banner_hold = None
        if self._running:
            self._track_reply_end(data)
        self._emit(data)
        if self._run_held and not self._running:
            self._replay_run_held()

    def _track_reply_end(self, data: bytes) -> None:
        if data.endswith(FRIENDLY_PROMPT) and self._at_friendly_prompt():
            return
        i = 0
        while self._eots > 0:
            j = data.find(CTRL_D, i)
            if j < 0:
                break
            self._eots -= 1
            i = j + 1
        if self._eots > 0:
            if not data.endswith(CTRL_D + RAW_REPL_PROMPT) or not self._engine_idle():
                return
            # the engine ended the exchange otherwise than the relay took it (it read bytes
            # sent while code ran first, or a raw-paste request as plain characters): it is
            # idle at its raw prompt, so the exchange is over
            self.stats["resyncs"] += 1
            self._eots = 0
            self._crlf.reset()
            i = len(data) - 1
        if data.find(RAW_REPL_PROMPT, i) >= 0:
            self._running = False
            if self._pending_intr and self._pending_for == self._exchange_no:
                # the code ended before the Ctrl-C could land: it is gone with its exchange
                self._pending_intr = 0.0
                self.stats["late_interrupts_dropped"] += 1
            if self._rxbuf is not None:
                self._rxbuf.emptied()  # the REPL reads what waited in the buffer
            if self._mute_reply:
                self._mute_reply = False
            if self._sigint_used and self._stdin_used:
                # the REPL has the host's bytes sent while the code ran to read first (as a
                # board's receive buffer): no hidden probe can go before them
                self._sigint_used = False
            if self._sigint_used:
                self._sigint_used = False
                self._probing = True
                self._probes = 0
                self._probe_buf = bytearray()
                self._write_engine(_PROBE + CTRL_D)

    def _engine_idle(self) -> bool:
        eng = self._engine
        return eng is not None and not eng.byte_interrupt and not eng.running_code()

    def _at_friendly_prompt(self) -> bool:
        """The relay took the host's bytes for a raw-REPL exchange, but the engine's REPL
        read them otherwise (a Ctrl-A it did not take, bytes typed into its line editor) and
        is back at its friendly prompt, idle: follow the engine, not the guess."""
        eng = self._engine
        if eng is None or eng.byte_interrupt or eng.running_code():
            return False  # code that printed ">>> " and runs on (or real firmware: its REPL)
        self.stats["resyncs"] += 1
        self._running = False
        self._eots = 0
        self._crlf.reset()
        self._mode = "friendly"
        self._line_len = 0
        self._paste = self._fpaste = False
        self._pending_intr = 0.0
        self._sigint_used = False
        self._mute_reply = False
        return True

    def _probe_done(self) -> None:
        self._probing = False
        if not self._probe_buf.startswith(b"OK" + CTRL_D + CTRL_D):
            # The interrupt broke the interpreter (heap locked): nothing can run in it any
            # more, so it is replaced, and the host is told as a board tells a crash: its
            # RAM is gone and it shows a soft reboot (a session layer counts the reset).
            self.stats["interrupt_heals"] += 1
            self._kill_engine()
            self._boot("heal")
            return
        if self._held_rx:
            held = bytes(self._held_rx)
            self._held_rx.clear()
            self._board_rx(held)

    def _emit(self, data: bytes, *, raw: bool = False) -> None:
        """Send board output towards the host, through the link's character and faults."""
        if not data or self._hung:
            return
        if self._mute_reply:
            return
        if self.profile.crlf and not raw:
            data = self._crlf(data)
        now = time.monotonic()
        opts = self.options
        if not opts.baudrate and not opts.latency_ms:
            if not self._outq and self._host_fd >= 0:
                # the common case, straight through: no extra turn of the loop per reply
                self._queue_out(now, data)
                self._deliver(now)
                return
            self._queue_out(now, data)
            return
        due = now + opts.latency_ms / 1000.0
        if not opts.baudrate:
            self._queue_out(due, data)
            return
        # each byte occupies the line for 10 bit times (8N1); slice so that the host sees
        # the bytes arrive at the line rate, not in a lump at the end
        per_byte = 10.0 / opts.baudrate
        step = max(1, int(opts.baudrate / 10 / 1000))  # about 1 ms of line time per slice
        start = max(due, self._out_free_at)
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            start += len(piece) * per_byte
            self._queue_out(start, piece)
        self._out_free_at = start

    def _queue_out(self, due: float, data: bytes) -> None:
        if self._outq and self._outq[-1][0] >= due:
            # merge with a queued slice that is not due before this one
            d, prev = self._outq.pop()
            self._outq.append((d, prev + data))
        else:
            self._outq.append((due, data))

    def _out_pending(self) -> int:
        return sum(len(d) for _, d in self._outq)

    def _deliver(self, now: float) -> None:
        while self._inq and self._inq[0][0] + self._in_late <= now:
            eng = self._engine
            if eng is not None and eng.input_backlog():
                # the board has not taken the last bytes yet (its machine was not scheduled):
                # the line waits for it, so the board sees them at the line rate of its time
                self._in_late = now - self._inq[0][0] + _BACKLOG_POLL
                break
            due, data = self._inq.popleft()
            if self.options.baudrate:
                self._in_late = now - due
            self._board_rx(data)
        if self._outq and self._outq[0][0] <= now:
            if self._host_fd < 0:
                # nobody listening: the board's output is lost, as on a closed port
                while self._outq and self._outq[0][0] <= now:
                    self._outq.popleft()
                return
            while self._outq and self._outq[0][0] <= now:
                due, queued = self._outq[0]
                counted = self._count_bytes(queued)
                if counted is None:
                    return
                data = counted
                try:
                    n = os.write(self._host_fd, data)
                except BlockingIOError:
                    return
                except OSError:
                    self._host_fd = -1
                    return
                if n < len(data):
                    self._outq[0] = (due, data[n:])
                    return
                self._outq.popleft()

    def _count_bytes(self, data: bytes) -> bytes | None:
        """Apply ``disconnect_after``: the link drops once N bytes went over it."""
        data, drop = self._faults.outbound(data)
        if not drop:
            return data
        if data:
            try:
                os.write(self._host_fd, data)
            except OSError:
                pass
        self._drop_link()
        return None

    # ---------------------------------------------------------------- host -> board

    def _read_host(self) -> None:
        try:
            data = os.read(self._host_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._host_fd = -1  # the other end is gone (socket closed)
            return
        self._host_bytes(data)

    def _host_bytes(self, data: bytes) -> None:
        """Bytes from the host enter the link: its faults, its line rate, then the board."""
        opts = self.options
        data, drop = self._faults.inbound(data)
        if drop:
            self._drop_link()
        if not data:
            return
        now = time.monotonic()
        if not opts.baudrate:
            self._inq.append((now, data)) if self._inq else self._board_rx(data)
            return
        per_byte = 10.0 / opts.baudrate
        step = max(1, int(opts.baudrate / 10 / 1000))
        if not self._inq:
            self._in_free_at += self._in_late
            self._in_late = 0.0
        start = max(now, self._in_free_at)
        for i in range(0, len(data), step):
            piece = data[i : i + step]
            start += len(piece) * per_byte
            self._inq.append((start, piece))
        self._in_free_at = start

    def _rx_buffer(self, data: bytes) -> bytes:
        """The legacy board's small UART receive buffer (see legacy_link.py)."""
        assert self._rxbuf is not None
        before = self._rxbuf.overruns
        data = self._rxbuf.take(data, time.monotonic(), running=self._running)
        if self._rxbuf.overruns != before:
            self.stats["rx_overruns"] += 1
        return data

    def _board_rx(self, data: bytes) -> None:
        """Bytes arrive at the board: follow the REPL state, act on control bytes."""
        if self._hung:
            return
        if self._booting and self._boot_stage == "scripts" and CTRL_C in data:
            # main.py runs: a Ctrl-C interrupts it as any code
            eng = self._engine
            j = data.find(CTRL_C)
            self._held_rx += data[:j]
            if eng is None or eng.interrupt() != "sent":
                self._held_rx += CTRL_C
            self._board_rx(data[j + 1 :])
            return
        if self._booting or self._probing:
            self._held_rx += data
            return
        if self.profile.rx_buffer:
            data = self._rx_buffer(data)
        if self._running and self._run_held:  # (never for real firmware: see below)
            self._hold_while_running(data)
            return
        out = bytearray()
        i = 0
        n = len(data)
        while i < n:
            if self._booting or self._probing:
                self._held_rx += data[i:]
                break
            if self._running and self._engine is not None and self._engine.byte_interrupt:
                # real firmware: its own REPL reads every byte (Ctrl-C included) as a board
                out += data[i:]
                break
            if self._running:
                m = _RAW_SPECIAL.search(data, i)
                if m is None:
                    out += data[i:]
                    self._stdin_used = self._stdin_used or i < n
                    break
                j = m.start()
                out += data[i:j]
                i = j + 1
                if out:
                    self._stdin_used = True
                self._write_engine(bytes(out))
                out.clear()
                if data[j] != _C:
                    # a REPL control byte while code runs: the REPL reads it, and what came
                    # after it, once the code has ended (a board's receive buffer keeps it;
                    # written now, the engine's REPL would act on it behind the relay's back)
                    self._hold_while_running(data[j:])
                    return
                if not self._interrupt():
                    out += CTRL_C
                continue
            if self._paste:
                j = data.find(CTRL_D, i)
                if j < 0:
                    out += data[i:]
                    break
                out += data[i:j]
                i = j + 1
                self._paste = False
                if self._exchange(out, CTRL_D, eots=3):
                    out.clear()
                    continue
                out.clear()
                break
            if self._mode == "raw":
                if self._ctrl_e:
                    b = data[i]
                    i += 1
                    if self._ctrl_e == 1 and b == ord("A"):
                        self._ctrl_e = 2
                        continue
                    if self._ctrl_e == 2 and b == _A:
                        self._ctrl_e = 0
                        if self.profile.raw_paste:
                            out += CTRL_E + b"A" + CTRL_A
                            self._paste = True
                        else:
                            # 1.9 firmware: Ctrl-E is nothing, Ctrl-A re-enters the raw REPL
                            self._write_engine(bytes(out))
                            out.clear()
                            self._emit(RAW_REPL_BANNER + RAW_REPL_PROMPT)
                        self._line_len = 0
                        continue
                    out += CTRL_E + (b"A" if self._ctrl_e == 2 else b"")
                    self._line_len += self._ctrl_e
                    self._ctrl_e = 0
                    i -= 1
                    continue
                m = _RAW_SPECIAL.search(data, i)
                if m is None:
                    out += data[i:]
                    self._line_len += n - i
                    break
                j = m.start()
                out += data[i:j]
                self._line_len += j - i
                i = j + 1
                b = data[j]
                if b == _A:
                    self._line_len = 0
                    out += CTRL_A
                elif b == _B:
                    self._mode = "friendly"
                    self._line_len = 0
                    self._hold_banner()
                    out += CTRL_B
                elif b == _C:
                    if self._interrupt():
                        continue
                    self._line_len = 0
                    out += CTRL_C
                elif b == _D:
                    if self._line_len == 0:
                        # soft reset: the unix port prints OK and exits; _engine_ended()
                        # turns that into the board's reboot
                        out += CTRL_D
                    else:
                        self._line_len = 0
                        if not self._exchange(out, CTRL_D, eots=2):
                            out.clear()
                            break
                        out.clear()
                elif b == _E:
                    if self._line_len == 0:
                        self._ctrl_e = 1
                    else:
                        self._line_len += 1
                        out += CTRL_E
                continue
            # friendly REPL
            if self._fpaste:
                # its paste mode: Ctrl-C cancels, Ctrl-D runs what was pasted
                m = _PASTE_END.search(data, i)
                if m is None:
                    out += data[i:]
                    break
                j = m.start()
                out += data[i : j + 1]
                i = j + 1
                self._fpaste = False
                self._line_len = 0
                continue
            m = _FRIENDLY_SPECIAL.search(data, i)
            if m is None:
                out += data[i:]
                self._line_len += n - i
                break
            j = m.start()
            out += data[i:j]
            self._line_len += j - i
            i = j + 1
            b = data[j]
            if b == _C and self._interrupt():
                continue
            # Ctrl-A..E act on an empty line only (on a line being typed they move the
            # cursor or delete, as readline's keys)
            empty = self._line_len == 0
            if b in (0x08, 0x7F):
                self._line_len = max(0, self._line_len - 1)
            elif b in (_C, 0x0D, 0x0A):
                self._line_len = 0
                if b != _C:
                    self._crlf.line_entered()  # what the line runs prints is the code's
            elif b == _A and empty:
                self._mode = "raw"
            elif b == _B and empty:
                self._hold_banner()  # Ctrl-B prints the banner again
            elif b == _E and empty:
                self._fpaste = True
            out.append(b)
        self._write_engine(bytes(out))

    def _hold_while_running(self, data: bytes) -> None:
        """Keep host bytes until the running code ends; a Ctrl-C among them still
        interrupts the code at once (a board's UART interrupt does not wait)."""
        while data:
            j = data.find(CTRL_C)
            if j < 0:
                self._run_held += data
                return
            self._run_held += data[:j]
            data = data[j + 1 :]
            if not (self._running and self._interrupt()):
                self._run_held += CTRL_C

    def _replay_run_held(self) -> None:
        """The code ended: the REPL reads what was kept while it ran."""
        if self._run_held and not self._running:
            held = bytes(self._run_held)
            self._run_held.clear()
            if self._booting or self._probing:
                self._held_rx[:0] = held
            else:
                self._board_rx(held)

    def _interrupt(self) -> bool:
        """Ctrl-C from the host: SIGINT if code runs; True if the byte was used up."""
        eng = self._engine
        if eng is None or eng.byte_interrupt:
            return False
        state = eng.interrupt()
        if state == "sent":
            self._sigint_used = self._mode == "raw"
            return True
        if state == "retry" or self._running:
            # The code was sent but the interpreter has not armed its handler yet (or is just
            # finishing): a board would still catch this Ctrl-C, so keep it until one or the
            # other is certain.
            self._pending_intr = time.monotonic() + _INTR_WAIT
            self._pending_for = self._exchange_no if self._running else 0
            return True
        return False

    def _retry_interrupt(self, now: float) -> None:
        eng = self._engine
        if self._pending_for and (self._pending_for != self._exchange_no or not self._running):
            # its exchange is over (another may be running now): never interrupt that one
            self._pending_intr = 0.0
            self.stats["late_interrupts_dropped"] += 1
            return
        if (
            eng is None
            or self._booting
            or now > self._pending_intr
            or (not self._running and not eng.running_code())
        ):
            # the code ended first: the Ctrl-C reaches the prompt as a byte, as on a board
            self._pending_intr = 0.0
            if eng is not None and not self._booting:
                self._write_engine(CTRL_C)
            return
        if eng.interrupt() == "sent":
            self._pending_intr = 0.0
            self._sigint_used = self._mode == "raw"

    def _exchange(self, code: bytearray, end: bytes, *, eots: int) -> bool:
        """The host gave the board code to run: apply per-exchange faults, then run it.

        Returns False when a fault took the board away (the rest of the input is lost).
        """
        self.stats["exchanges"] += 1
        self._exchange_no += 1
        fate = self._faults.exchange()
        if fate.garbage is not None:
            self._emit(fate.garbage, raw=True)
        if fate.fault is not None:
            if fate.fault == "reset":
                self._hard_reset(drop=False)
                return False
            if fate.fault == "hang":
                self._write_engine(bytes(code))
                self._hung = True
                return False
            if fate.fault == "disconnect":
                # the reply is lost with the link; the board runs the code all the same
                self._write_engine(bytes(code) + end)
                self._running = True
                self._eots = eots
                self._mute_reply = True
                if self._host_fd >= 0:
                    self._drop_link()
                return False
        self._write_engine(bytes(code) + end)
        self._running = True
        self._stdin_used = False
        self._eots = eots
        self._crlf.exchange(eots)  # its reply's parts are the code's output (line ends)
        return True
