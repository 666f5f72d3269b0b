"""The QEMU engine: a board's real firmware on an emulated chip.

Where QEMU can run a board, a profile can name a QEMU machine and a firmware image
(``qemu_machine``, ``firmware``): the link then runs that firmware in ``qemu-system-arm``
instead of the unix port, behind the same relay, faults and ways in.  The built-in
``microbit`` profile is Debian's MicroPython 1.9.2 for the BBC micro:bit
(``firmware-microbit-micropython``) on ``qemu-system-arm -M microbit``.

What the relay needs from an engine, and how this one gives it:

- ``fd``: the board's UART, one end of a socket pair that QEMU's serial port uses
  (``-chardev socket,fd=N``): no terminal in between, so no byte is ever cooked;
- ``interrupt()`` is never needed: a Ctrl-C byte reaches the firmware's UART interrupt, which
  raises ``KeyboardInterrupt`` as on the board (``byte_interrupt``);
- a soft reset (Ctrl-D, ``sys.exit()``) is the firmware's own;
- a hard reset restarts the machine: the process ends (after its flash is saved) and a new
  one boots from the saved flash (after a first reset, one launched ahead and paused, when
  the flash is still the one it booted from: a reset then costs the firmware's boot only).
  A reset the firmware asks for (``machine.reset()``) pauses QEMU (``-action
  reboot=shutdown,shutdown=pause``) and is reported on the control pipe (``ctl_r``) as the
  unix port's board reports one, so the relay does the same thing;
- ``kill()`` saves the flash first (QMP ``memsave``), then ends the process.

The flash of a firmware given as Intel HEX (the micro:bit's) is kept in an image file, the
raw bytes of the chip's flash (``flash_size`` bytes from the lowest 64 KB boundary of the
firmware's addresses).  A new machine boots from the firmware plus whatever of the image the
firmware does not cover (the filesystem the firmware keeps in the rest of its flash).  A
firmware given as ELF or raw binary (``-kernel``, e.g. MicroPython's ``qemu`` port) keeps no
flash: each machine starts from the image alone.

Confinement: no network device (``-nic none``, ``-nodefaults``), no display, no monitor on a
terminal, QEMU's own seccomp sandbox (``-sandbox on``: no spawning processes, no privilege
changes), and, as for the unix port's engine, the launcher's Landlock and seccomp policy
(:mod:`.sandbox`): QEMU may read its libraries, its data and the firmware, and write only the
board's ``qemu`` folder (the boot image, the flash dumps); it never opens the flash image,
which the relay reads and writes.  QEMU dies with the thread that started it
(``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pytest_mpsession.emulator import sandbox
from pytest_mpsession.emulator.engine import _LIB_DIRS, EmulatorError, _elf_interp
from pytest_mpsession.emulator.sandbox import CHILD

if TYPE_CHECKING:
    from pytest_mpsession.emulator.profiles import Profile

__all__ = [
    "DEBIAN_PACKAGES",
    "MICROBIT_FIRMWARE",
    "QEMU_BINARY",
    "QemuEngine",
    "QemuMachine",
    "check_qemu",
]

#: what Debian calls the two things ``mpmock://microbit`` needs
DEBIAN_PACKAGES = ("qemu-system-arm", "firmware-microbit-micropython")
#: where ``firmware-microbit-micropython`` puts MicroPython 1.9.2 for the micro:bit
MICROBIT_FIRMWARE = "/usr/share/firmware-microbit-micropython/firmware.hex"
#: the QEMU that runs Cortex-M boards
QEMU_BINARY = "qemu-system-arm"

_HOWTO = (
    "`apt-get install {pkgs}` (Debian/Ubuntu), or name another firmware in a profile "
    "(`firmware = PATH`, see the README's profiles section)"
)

# Run by ``python -S -c`` in front of QEMU: ties QEMU's life to the thread that started it
# (PR_SET_PDEATHSIG survives exec), so no machine outlives its board, even when pytest is
# killed with SIGKILL.  The getppid() check closes the race where that thread died first.
# Then it confines itself (sandbox.CHILD: Landlock and seccomp, as the unix port's engine)
# with the policy in argv[2] and becomes QEMU by the one execve the confinement lets through.
_LAUNCH = (
    "import sys,os,_ctypes as C\n"
    "class _L(C._SimpleCData):_type_='l'\n"
    "class _F(C.CFuncPtr):_flags_=C.FUNCFLAG_CDECL;_restype_=_L\n"
    "class _h:_handle=C.dlopen(None,0)\n"
    "_F(('prctl',_h))(1,9)\n"
    "if os.getppid()!=int(sys.argv[1]):os._exit(1)\n"
    "P=eval(sys.argv[2])\n" + CHILD + "if P:confine(P,sys.argv[3:])\n"
    "os.execv(sys.argv[3],sys.argv[3:])\n"
)
# how long QEMU may take to start its machine (it takes ~50 ms) and to answer QMP
_START_TIMEOUT = 10.0
_QMP_TIMEOUT = 5.0
# bytes at the start of the flash that tell a flash image of this firmware from another file
_HEAD = 64
# QEMU's seccomp sandbox: no fork/exec, no setuid, no obsolete or resource-control calls
_SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def check_qemu(profile: Profile) -> str:
    """Return the path of the QEMU binary for ``profile``; a one-line error when QEMU or
    the profile's firmware is missing, naming the Debian packages to install."""
    exe = shutil.which(QEMU_BINARY)
    fw_ok = os.path.isfile(profile.firmware) and os.access(profile.firmware, os.R_OK)
    if exe is None or not fw_ok:
        if profile.firmware == MICROBIT_FIRMWARE:
            missing = [
                pkg
                for pkg, ok in zip(DEBIAN_PACKAGES, (exe is not None, fw_ok), strict=True)
                if not ok
            ]
            raise EmulatorError(
                f"the {profile.name} profile runs the micro:bit's MicroPython firmware in QEMU: "
                f"{' and '.join(missing)} missing; " + _HOWTO.format(pkgs=" ".join(DEBIAN_PACKAGES))
            )
        if exe is None:
            raise EmulatorError(
                f"the {profile.name} profile runs its firmware in QEMU: {QEMU_BINARY} is not on "
                f"PATH; `apt-get install {DEBIAN_PACKAGES[0]}` (Debian/Ubuntu)"
            )
        raise EmulatorError(
            f"the {profile.name} profile's firmware {profile.firmware!r} cannot be read: set "
            "`firmware` in the profile to the path of a firmware image (ELF, HEX or binary)"
        )
    return exe


# ------------------------------------------------------------------------- Intel HEX


def _hex_records(path: str) -> Iterator[tuple[int, bytes]]:
    """The data records of an Intel HEX file as (absolute address, bytes)."""
    base = 0
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                if not line.startswith(":"):
                    raise ValueError
                raw = bytes.fromhex(line[1:])
                n, addr, kind = raw[0], int.from_bytes(raw[1:3], "big"), raw[3]
                data = raw[4 : 4 + n]
                if len(data) != n or sum(raw) & 0xFF:
                    raise ValueError
            except (ValueError, IndexError):
                raise EmulatorError(f"{path}:{lineno}: not an Intel HEX record") from None
            if kind == 0:
                yield base + addr, data
            elif kind == 1:
                return
            elif kind == 2:
                base = int.from_bytes(data, "big") << 4
            elif kind == 4:
                base = int.from_bytes(data, "big") << 16


def _hex_lines(addr: int, data: bytes) -> Iterator[str]:
    """Intel HEX records (extended linear address + 16-byte data) for ``data`` at ``addr``."""
    upper = -1
    for i in range(0, len(data), 16):
        a = addr + i
        seg = data[i : i + 16]
        if a >> 16 != upper:
            upper = a >> 16
            rec = bytes([2, 0, 0, 4]) + upper.to_bytes(2, "big")
            yield ":" + (rec + bytes([-sum(rec) & 0xFF])).hex().upper()
        rec = bytes([len(seg), (a >> 8) & 0xFF, a & 0xFF, 0]) + seg
        yield ":" + (rec + bytes([-sum(rec) & 0xFF])).hex().upper()


class _HexFirmware:
    """A firmware image in Intel HEX: which bytes of the flash it covers."""

    def __init__(self, path: str, flash_size: int) -> None:
        self.path = path
        covered = bytearray(flash_size)
        content = bytearray(flash_size)
        records = list(_hex_records(path))
        if not records:
            raise EmulatorError(f"the firmware {path!r} holds no data")
        lo = min(a for a, _ in records) & ~0xFFFF
        for addr, data in records:
            off = addr - lo
            if 0 <= off < flash_size:
                end = min(off + len(data), flash_size)
                covered[off:end] = b"\x01" * (end - off)
                content[off:end] = data[: end - off]
        self.base = lo
        self.size = flash_size
        self._covered = bytes(covered)
        #: the first bytes of the flash as the firmware writes them (its vector table)
        self.head = bytes(content[:_HEAD])
        with open(path) as f:
            self._lines = [ln.strip() for ln in f if ln.strip() and not ln.startswith(":00000001")]

    def boot_hex(self, image: bytes | None, dest: str) -> None:
        """Write ``dest``: the firmware plus the image's bytes the firmware does not cover.

        Lines of zeros are left out: that is how QEMU powers the flash on (a real chip's
        erased flash reads 0xFF; the firmware erases what it uses for files).
        """
        lines = list(self._lines)
        if image is not None:
            cov = self._covered
            run_start = -1
            run = bytearray()
            for off in range(0, self.size, 16):
                chunk = image[off : off + 16]
                keep = not any(cov[off : off + 16]) and chunk.strip(b"\x00") != b""
                if keep:
                    if run_start < 0:
                        run_start = off
                    run += chunk
                elif run_start >= 0:
                    lines.extend(_hex_lines(self.base + run_start, bytes(run)))
                    run_start, run = -1, bytearray()
            if run_start >= 0:
                lines.extend(_hex_lines(self.base + run_start, bytes(run)))
        lines.append(":00000001FF")
        with open(dest, "w") as f:
            f.write("\n".join(lines) + "\n")


_HEX_CACHE: dict[tuple[str, int, int, int], _HexFirmware] = {}


def _hex_firmware(path: str, flash_size: int) -> _HexFirmware:
    """The parsed firmware, once per file version (every board start would parse it again)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise EmulatorError(f"cannot read the firmware {path!r}: {exc.strerror}") from exc
    key = (os.path.realpath(path), st.st_mtime_ns, st.st_size, flash_size)
    if key not in _HEX_CACHE:
        _HEX_CACHE[key] = _HexFirmware(path, flash_size)
    return _HEX_CACHE[key]


class QemuMachine:
    """What stays across a board's machines: the QEMU binary, the firmware, the flash image.

    ``flash`` is the host file of the flash image (created when missing, its size checked
    when present, locked for this board's life so a second board cannot share it).  QEMU
    never opens it: the relay builds the boot image from it and saves the chip's flash into
    it.  ``workdir`` (a folder of the board's) gets a ``qemu`` folder, the only one QEMU may
    write in (the boot image, the flash dumps); ``policy`` is QEMU's confinement.
    """

    def __init__(self, profile: Profile, flash: str | None, workdir: str) -> None:
        self.profile = profile
        self.exe = check_qemu(profile)
        self.workdir = os.path.join(workdir, "qemu")
        os.makedirs(self.workdir, exist_ok=True)
        fw = profile.firmware
        self._hex: _HexFirmware | None = None
        self._lock_fd = -1
        self.flash = flash
        if fw.lower().endswith((".hex", ".ihex")):
            if profile.flash_size <= 0:
                raise EmulatorError(
                    f"profile {profile.name}: a HEX firmware needs flash_size (the chip's flash "
                    "in bytes) to keep its flash"
                )
            self._hex = _hex_firmware(fw, profile.flash_size)
        elif flash is not None:
            raise EmulatorError(
                f"flash={flash!r}: the {profile.name} profile's firmware {fw!r} is not an Intel "
                "HEX image of the chip's flash, so the emulator cannot keep its flash; drop "
                "the flash option"
            )
        if self._hex is not None:
            self.flash = flash or os.path.join(workdir, "flash.img")
            self._open_flash(self.flash, given=flash is not None)
        self.starts = 0
        #: machines started ahead that a reset could use (see :meth:`start`)
        self.spares_used = 0
        # the next machine, launched paused after a reset, and the flash it booted from
        self._spare: QemuEngine | None = None
        self._spare_flash: bytes | None = None
        self.policy = sandbox.policy(
            read_write=[],
            read_only=[*_LIB_DIRS, "/usr/share/qemu", os.path.realpath(fw)],
            execute=[os.path.realpath(self.exe), *filter(None, [_elf_interp(self.exe)])],
            tree=[self.workdir],
        )

    def _open_flash(self, path: str, *, given: bool) -> None:
        size = self.profile.flash_size
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EmulatorError(
                f"cannot use {path!r} as the board's flash image: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise EmulatorError(
                f"flash={path!r} is in use by another emulated board; give each board its own "
                "flash image"
            ) from None
        have = os.fstat(fd).st_size
        if have == 0:
            # a new image: the chip's flash as QEMU powers it on (all zero)
            os.ftruncate(fd, size)
        elif have != size:
            os.close(fd)
            what = "an empty or missing file" if not given else f"a {size}-byte flash image"
            raise EmulatorError(
                f"flash={path!r} is not a flash image of the {self.profile.name} profile "
                f"({have} bytes, expected {what}); it was left untouched"
            )
        head = os.pread(fd, _HEAD, 0)
        if self._hex is not None and head not in (self._hex.head, bytes(_HEAD)):
            os.close(fd)
            raise EmulatorError(
                f"flash={path!r} is not a flash image of the {self.profile.name} profile's "
                "firmware (its first bytes are not the firmware's); it was left untouched"
            )
        self._lock_fd = fd

    def read_flash(self) -> bytes | None:
        """The flash image's bytes (None: this firmware keeps no flash)."""
        if self._lock_fd < 0:
            return None
        return os.pread(self._lock_fd, self.profile.flash_size, 0)

    def write_flash(self, data: bytes) -> None:
        """Store a saved flash in the image (in place: the lock stays on the same file)."""
        if self._lock_fd >= 0 and len(data) == self.profile.flash_size:
            os.pwrite(self._lock_fd, data, 0)

    def start(self) -> QemuEngine:
        """Boot a new machine from the firmware and the flash image.

        After the first reset, the next machine is launched ahead, paused (``-S``) before
        its first instruction: a reset then only resumes it (QEMU's own start-up, ~0.1 s, is
        paid while the board runs, as the unix port's engine keeps a spare).  It is used
        only when the flash is still the one it booted from; otherwise (the firmware wrote
        a file since) it is ended and a machine boots from the flash as it is now.
        """
        self.starts += 1
        spare, basis = self._spare, self._spare_flash
        self._spare = self._spare_flash = None
        eng: QemuEngine | None = None
        if spare is not None:
            if basis == self.read_flash():
                try:
                    spare.resume()
                    eng = spare
                    self.spares_used += 1
                except EmulatorError:
                    spare.kill(save=False)
            else:
                spare.kill(save=False)
            if eng is None:
                spare.close_ctl()
        if eng is None:
            eng = QemuEngine(self)
        if self.starts > 1:
            self._launch_spare()
        return eng

    def _launch_spare(self) -> None:
        """Launch the next machine, paused; a failure only means the next reset boots one."""
        basis = self.read_flash()
        try:
            self._spare = QemuEngine(self, paused=True)
            self._spare_flash = basis
        except EmulatorError:
            self._spare = None

    def argv(self, serial_fd: int, qmp_fd: int, boot_image: str) -> list[str]:
        """QEMU's command line: the machine, its firmware, its UART and QMP, nothing else."""
        p = self.profile
        load = (
            ["-device", f"loader,file={boot_image}"]
            if self._hex is not None
            else ["-kernel", p.firmware]
        )
        return [
            self.exe,
            "-M",
            p.qemu_machine,
            "-nodefaults",
            "-nographic",
            "-monitor",
            "none",
            "-nic",
            "none",
            "-sandbox",
            _SANDBOX,
            # a reset the firmware asks for pauses the machine: the relay restarts it from
            # the saved flash (an in-place reset would reload the boot image's old files)
            "-action",
            "reboot=shutdown,shutdown=pause",
            *load,
            "-chardev",
            f"socket,id=uart,fd={serial_fd}",
            "-serial",
            "chardev:uart",
            "-chardev",
            f"socket,id=qmp,fd={qmp_fd}",
            "-mon",
            "chardev=qmp,mode=control",
        ]

    def boot_image(self, name: str = "boot.hex") -> str:
        """Write the image a new machine boots from (``name`` in the QEMU folder; a spare has
        its own, as it reads it while the current machine runs); returns its path."""
        if self._hex is None:
            return self.profile.firmware
        path = os.path.join(self.workdir, name)
        self._hex.boot_hex(self.read_flash(), path)
        return path

    @property
    def flash_base(self) -> int:
        """Where the flash starts in the chip's address space."""
        return self._hex.base if self._hex is not None else 0

    def close(self) -> None:
        """End the spare machine, if any, and release the flash image (its lock)."""
        if self._spare is not None:
            self._spare.kill(save=False)
            self._spare.close_ctl()
            self._spare = self._spare_flash = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class QemuEngine:
    """One QEMU process running the board's firmware: the engine interface the relay uses.

    ``fd`` is the host end of the board's UART (non-blocking); ``ctl_r`` a pipe on which a
    reset the firmware asked for arrives as ``b"H"`` (the relay then restarts the machine).
    """

    #: a Ctrl-C byte interrupts running code by itself (the firmware reads its UART in an
    #: interrupt handler): the relay sends it as a byte, never as a signal
    byte_interrupt = True

    def __init__(self, machine: QemuMachine, *, paused: bool = False) -> None:
        self.machine = machine
        uart_host, uart_qemu = socket.socketpair()
        qmp_host, qmp_qemu = socket.socketpair()
        ctl_r, self._ctl_w = os.pipe()
        os.set_blocking(ctl_r, False)
        self.ctl_r = ctl_r
        image = machine.boot_image("boot-spare.hex" if paused else "boot.hex")
        argv = machine.argv(uart_qemu.fileno(), qmp_qemu.fileno(), image)
        if paused:
            argv.append("-S")  # built and loaded, stopped before its first instruction
        self._errpath = os.path.join(machine.workdir, "qemu-stderr.txt")
        try:
            with open(self._errpath, "wb") as err:
                self.proc = subprocess.Popen(
                    [
                        *(sys.executable, "-S", "-c", _LAUNCH),
                        *(str(os.getpid()), repr(machine.policy), *argv),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    close_fds=True,
                    pass_fds=(uart_qemu.fileno(), qmp_qemu.fileno()),
                    start_new_session=True,
                )
        except OSError as exc:
            for s in (uart_host, uart_qemu, qmp_host, qmp_qemu):
                s.close()
            os.close(ctl_r)
            os.close(self._ctl_w)
            raise EmulatorError(f"cannot start {argv[0]!r}: {exc}") from exc
        finally:
            uart_qemu.close()
            qmp_qemu.close()
        self.pid: int = self.proc.pid
        self._uart = uart_host
        uart_host.setblocking(False)
        self.fd: int = uart_host.fileno()
        self._qmp = qmp_host
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._qmp_lock = threading.Lock()
        self._greeted = threading.Event()
        self._up = False
        self._reader = threading.Thread(
            target=self._read_qmp, name=f"qemu-qmp-{self.pid}", daemon=True
        )
        self._reader.start()
        self._paused = paused
        if not paused:
            self._await_monitor()

    def _await_monitor(self) -> None:
        """Wait for QEMU's monitor (it serves QMP once its machine is built); an error before
        that (a bad machine name, an unreadable firmware) is its last stderr line."""
        try:
            if not self._greeted.wait(_START_TIMEOUT) or not self._up:
                raise EmulatorError(f"no answer within {_START_TIMEOUT:g} s")
            self._command("qmp_capabilities")
        except EmulatorError as exc:
            if self._greeted.is_set():  # the monitor closed: QEMU is exiting
                try:
                    self.proc.wait(_START_TIMEOUT)  # its error is written by then
                except subprocess.TimeoutExpired:
                    pass
            why = self._stderr_line() or str(exc)
            self.kill(save=False)
            self.close_ctl()
            raise EmulatorError(
                f"QEMU could not start the {self.machine.profile.name} board: {why}"
            ) from None

    def resume(self) -> None:
        """Run a machine launched paused: its firmware starts from its first instruction
        (as at power-on). EmulatorError when it cannot (the caller boots another)."""
        if not self._paused:
            return
        self._await_monitor()
        self._command("cont")
        self._paused = False

    def close_ctl(self) -> None:
        """Close the read end of the reset pipe (the relay closes it for a machine it ran)."""
        if self.ctl_r >= 0:
            os.close(self.ctl_r)
            self.ctl_r = -1

    def _stderr_line(self) -> str:
        try:
            with open(self._errpath, "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        # QEMU's own messages ("qemu-system-arm: unsupported machine type", "qemu: fatal:
        # Lockup ..."), not a register dump after them; else its last lines
        said = [ln for ln in lines if ln.startswith(("qemu", "Use -machine"))] or lines[-2:]
        return "; ".join(
            ln.strip().removeprefix(f"{QEMU_BINARY}: ").removeprefix("qemu: ") for ln in said[-2:]
        )

    # -------------------------------------------------------------------------- QMP

    def _read_qmp(self) -> None:
        f = self._qmp.makefile("rb")
        try:
            for line in f:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "QMP" in msg:
                    self._up = True
                    self._greeted.set()
                elif "event" in msg:
                    self._event(msg)
                else:
                    self._replies.put(msg)
        except OSError:
            pass
        finally:
            f.close()
            self._greeted.set()
            self._replies.put(None)

    def _event(self, msg: dict[str, Any]) -> None:
        data = msg.get("data") or {}
        if (
            msg["event"] == "SHUTDOWN"
            and data.get("guest")
            and data.get("reason") == ("guest-reset")
        ):
            # the firmware reset the chip (machine.reset(), a watchdog): the machine is
            # paused; the relay restarts it (saving the flash first), as for a hard reset
            try:
                os.write(self._ctl_w, b"H")
            except OSError:
                pass

    def _command(self, name: str, **args: Any) -> dict[str, Any]:
        with self._qmp_lock:
            cmd = {"execute": name, "arguments": args} if args else {"execute": name}
            try:
                self._qmp.sendall(json.dumps(cmd).encode() + b"\n")
            except OSError as exc:
                raise EmulatorError(f"QEMU's monitor is gone ({exc})") from exc
            deadline = time.monotonic() + _QMP_TIMEOUT
            try:
                reply = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise EmulatorError(f"QEMU did not answer {name} in {_QMP_TIMEOUT:g} s") from None
            if reply is None:
                self._replies.put(None)  # every later command sees the monitor gone too
                raise EmulatorError("QEMU's monitor is gone")
            if "error" in reply:
                raise EmulatorError(f"QEMU refused {name}: {reply['error'].get('desc')}")
            result: dict[str, Any] = reply
            return result

    def save_flash(self) -> None:
        """Copy the chip's flash into the flash image (nothing for firmware without flash)."""
        m = self.machine
        if m.read_flash() is None:
            return
        dump = os.path.join(m.workdir, f"dump-{self.pid}.bin")
        try:
            self._command("memsave", val=m.flash_base, size=m.profile.flash_size, filename=dump)
            with open(dump, "rb") as f:
                m.write_flash(f.read())
        except (EmulatorError, OSError):
            pass  # a machine that cannot be read any more keeps the last saved flash
        finally:
            try:
                os.unlink(dump)
            except OSError:
                pass

    # ------------------------------------------------------------- engine interface

    def running_code(self) -> bool:
        """Not known from outside the chip; the relay never needs it (``byte_interrupt``)."""
        return False

    def interrupt(self) -> str:
        """Nothing to do from outside: the Ctrl-C byte itself interrupts (returns ``idle``)."""
        return "idle"

    def set_stack_limit(self, limit: int) -> bool:
        """Nothing to set from outside: the firmware's stack is the chip's (returns False)."""
        return False

    def input_backlog(self) -> int:
        """Bytes sent to the board's UART that QEMU has not taken into the UART yet.

        QEMU takes bytes only as the UART's receive FIFO has room, and the firmware empties
        the FIFO into its own small buffer in an interrupt: a backlog here reaches the
        firmware at once when its machine runs again, faster than any line, and overflows
        that buffer.  The link waits while there is one.
        """
        if self.fd < 0:
            return 0
        try:
            return int(struct.unpack("i", fcntl.ioctl(self.fd, termios.TIOCOUTQ, b"\0" * 4))[0])
        except OSError:
            return 0

    def poll(self) -> int | None:
        """The exit status if QEMU has ended, else None."""
        return self.proc.poll()

    def kill(self, *, save: bool = True) -> None:
        """Save the flash, end QEMU and release the UART; safe to call twice."""
        if self.proc.poll() is None:
            if save:
                self.save_flash()
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()
        try:
            self._qmp.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._qmp.close()
        if self._reader is not threading.current_thread():
            self._reader.join(1.0)
        if self.fd >= 0:
            self._uart.close()
            self.fd = -1
        if self._ctl_w >= 0:
            os.close(self._ctl_w)
            self._ctl_w = -1
