"""Board profiles: who the emulated board says it is, its RAM, flash and link quirks.

Built-in profiles: ``generic`` (the ``--mp-mock`` default, a current board), ``esp32``,
``rp2``, ``stm32``, ``unix`` (the bare interpreter, nothing disguised) and ``legacy`` (a
MicroPython 1.9-era board: 16 KB of RAM, no raw-paste, no threads, no ``os.ilistdir``), and
``microbit``: not the unix port but the BBC micro:bit's real MicroPython 1.9.2 firmware in
``qemu-system-arm -M microbit`` (:mod:`.qemu`).  A profile with ``qemu_machine`` and
``firmware`` runs that firmware image on that QEMU machine (never disguised).

User profiles live in a TOML file, one table per profile, each based on a built-in one::

    [mydevice]
    base = "esp32"                   # required: a built-in profile (or one defined earlier)
    banner = "MicroPython v1.23.0 on 2024-06-02; My Device with ESP32"
    heap = 65536                     # bytes of RAM
    flash_size = 1048576             # bytes of littlefs flash
    missing = ["bluetooth"]          # modules that raise ImportError on this board

The file is found, in order: ``load_profile(name, profiles_file=...)``, the ``profiles=PATH``
option of an ``mpmock://`` URL, then the ``MP_MOCK_PROFILES`` environment variable.  Any field
of :class:`Profile` except ``name`` may be set.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Any

from pytest_mpsession.emulator.engine import EmulatorError
from pytest_mpsession.emulator.qemu import MICROBIT_FIRMWARE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["BUILTIN_PROFILES", "PROFILES_ENV", "Profile", "load_profile"]

PROFILES_ENV = "MP_MOCK_PROFILES"


@dataclass(frozen=True)
class Profile:
    """Everything that makes one kind of emulated board differ from another."""

    name: str
    #: False for ``unix``: the bare interpreter, no board disguise, host filesystem untouched.
    disguise: bool = True
    #: ``sys.platform``
    platform: str = "generic"
    #: firmware version reported (``sys.implementation.version``, ``os.uname().release``)
    version: tuple[int, int, int] = (1, 24, 1)
    #: ``os.uname()`` fields
    sysname: str = "generic"
    nodename: str = "generic"
    machine: str = "Generic board with emulated MCU"
    build_date: str = "2024-11-29"
    #: ``os.uname().release`` and ``.version``; "" derives them from the above
    release: str = ""
    uname_version: str = ""
    #: the friendly REPL's first banner line (without CRLF); "" derives it from the above
    banner: str = ""
    #: printed on a soft reset (current firmware: "MPY: soft reboot")
    soft_reboot: str = "MPY: soft reboot"
    #: the board's RAM (heap) in bytes
    heap: int = 256 * 1024
    #: heap free at the REPL after boot (what the firmware leaves to code); 0: heap - heap/16
    free: int = 0
    #: littlefs flash in bytes (0: no filesystem) and its block size
    flash_size: int = 1024 * 1024
    block_size: int = 4096
    #: the raw REPL answers the raw-paste request (False: answers with the banner, as 1.9)
    raw_paste: bool = True
    #: the board sends "\r\n" for every "\n" of its output
    crlf: bool = False
    #: UART receive buffer in bytes, 0 = unlimited (USB CDC); bytes beyond it are dropped
    rx_buffer: int = 0
    #: how fast the board's REPL empties its receive buffer at a prompt, bytes per second
    #: (running code does not read it: then it only fills, and overflows)
    rx_rate: int = 0
    #: modules (or "module.attr") the board does not have: ImportError / AttributeError
    missing: tuple[str, ...] = ()
    #: fake peripheral modules loaded from emulator/board/ (besides machine)
    modules: tuple[str, ...] = ()
    #: CPU frequency reported by machine.freq()
    freq: int = 160_000_000
    #: whether the board's link is USB (drops on hard reset) or a UART (stays)
    usb: bool = True
    #: the interpreter's C stack limit in bytes (how deep code can recurse); 0: the engine's
    stack_limit: int = 0
    #: main.py runs after every reset, also a soft reset in the raw REPL (a board runs it
    #: only when it comes up in the friendly REPL, the 1.9.2 micro:bit too)
    main_after_raw_reset: bool = False
    #: the compiler has the native emitters (@micropython.native, viper, inline assembler)
    emitters: bool = True
    #: the line rate the link runs at unless the URL sets ``baudrate`` (0: no throttling)
    baudrate: int = 0
    #: real firmware on an emulated chip (see :mod:`.qemu`): the ``qemu-system-arm -M``
    #: machine and the firmware image it runs; "" runs the unix port
    qemu_machine: str = ""
    firmware: str = ""

    def banner_line(self) -> bytes:
        """The first line of the friendly REPL's banner, as the board prints it."""
        if self.banner:
            return self.banner.encode()
        v = ".".join(str(x) for x in self.version)
        return f"MicroPython v{v} on {self.build_date}; {self.machine}".encode()

    def free_at_boot(self) -> int:
        """``gc.mem_free()`` at the first prompt."""
        return self.free or self.heap - self.heap // 16

    def version_string(self) -> str:
        """``os.uname().version`` as firmware of this age reports it."""
        if self.uname_version:
            return self.uname_version
        v = ".".join(str(x) for x in self.version)
        return f"v{v} on {self.build_date}"

    def release_string(self) -> str:
        """``os.uname().release``."""
        return self.release or ".".join(str(x) for x in self.version)


# What the unix port has and a micro:bit running 1.9.2 does not (its modules: builtins, gc,
# math, micropython, sys, array, collections, struct, random, os, time, machine, microbit
# and the board's music/radio/... drivers); "os.x": functions its flat `os` lacks.
_LEGACY_MISSING = (
    *"_asyncio _thread argparse asyncio binascii cmath cryptolib deflate errno framebuf".split(),
    *"hashlib heapq io json mip platform re requests select socket ssl termios tls".split(),
    *"uasyncio uctypes vfs websocket threading zlib uzlib".split(),
    *"os.stat os.ilistdir os.getcwd os.chdir os.mkdir os.rmdir os.rename os.statvfs".split(),
)
# the micro:bit's own modules (fakes in emulator/board/_<name>.py)
_MICROBIT_MODULES = tuple(
    "microbit music neopixel radio speech audio love this antigravity".split()
)
# C stack for code, bytes: recursion stops 3 calls deep in exec'd code (board: 1, see
# tests/test_legacy_fidelity.py); any lower and the flash, a Python block device under
# littlefs, could not be reached from the session's file helpers (4000 bytes: open() one
# function deep ran out of stack, where the real 1.9.2 micro:bit writes a file)
_LEGACY_STACK = 4600

BUILTIN_PROFILES: dict[str, Profile] = {
    "unix": Profile(
        name="unix",
        disguise=False,
        platform="linux",
        version=(1, 29, 0),
        sysname="Linux",
        soft_reboot="MPY: soft reboot",
        # the unix port's own default heap on a 64-bit host
        heap=2 * 1024 * 1024,
        flash_size=0,
    ),
    "generic": Profile(name="generic"),
    "esp32": Profile(
        name="esp32",
        platform="esp32",
        sysname="esp32",
        nodename="esp32",
        machine="Generic ESP32 module with ESP32",
        heap=160 * 1024,
        flash_size=2 * 1024 * 1024,
        modules=("network", "bluetooth", "esp", "esp32"),
        freq=160_000_000,
    ),
    "rp2": Profile(
        name="rp2",
        platform="rp2",
        sysname="rp2",
        nodename="rp2",
        machine="Raspberry Pi Pico with RP2040",
        heap=192 * 1024,
        flash_size=1024 * 1024,
        modules=("rp2",),
        freq=125_000_000,
    ),
    "stm32": Profile(
        name="stm32",
        platform="pyboard",
        sysname="pyboard",
        nodename="pyboard",
        machine="PYBv1.1 with STM32F405RG",
        heap=100 * 1024,
        flash_size=512 * 1024,
        block_size=512,
        modules=("pyb",),
        freq=168_000_000,
    ),
    # A BBC micro:bit (v1.0.1 firmware, MicroPython 1.9.2): what the board has and lacks, as
    # a real one reports it (see /work/shared/transcripts/ and tests/test_emulator_legacy.py)
    "legacy": Profile(
        name="legacy",
        platform="microbit",
        version=(1, 9, 2),
        sysname="microbit",
        nodename="microbit",
        release="1.0.1",
        uname_version=(
            "micro:bit v1.0.1+b0bf4a9 on 2018-12-13; MicroPython v1.9.2-34-gd64154c73 on 2017-09-01"
        ),
        machine="micro:bit with nRF51822",
        build_date="2017-09-01",
        banner="MicroPython v1.9.2-34-gd64154c73 on 2017-09-01; micro:bit v1.0.1 with nRF51822",
        soft_reboot="soft reboot",
        heap=16 * 1024,
        # the board has about 9.7 KB free at start (microbit: 9680 after gc.collect()); the
        # engine is 64-bit (its objects and its compiler take more of the same RAM), and at
        # 9.7 KB the session's helpers do not fit where they fit on the board (issue 14.1):
        # 13 KB (12.5 KB is the least with which legacy runs what the micro:bit runs)
        free=13 * 1024,
        # a flat filesystem of about 14 KB for files
        flash_size=16 * 1024,
        block_size=512,
        raw_paste=False,
        crlf=True,
        rx_buffer=256,
        rx_rate=256 * 1024,
        missing=_LEGACY_MISSING,
        modules=_MICROBIT_MODULES,
        freq=16_000_000,
        # the micro:bit's USB belongs to its interface chip, which stays up over a reset
        usb=False,
        stack_limit=_LEGACY_STACK,
        emitters=False,
    ),
    # Debian's MicroPython 1.9.2 for the BBC micro:bit in qemu-system-arm -M microbit: the
    # real firmware, so nothing is disguised; the fields below describe what it reports
    "microbit": Profile(
        name="microbit",
        disguise=False,
        platform="microbit",
        version=(1, 9, 2),
        sysname="microbit",
        nodename="microbit",
        machine="micro:bit with nRF51822",
        build_date="2017-09-01",
        banner="MicroPython v1.9.2-34-gd64154c73 on 2017-09-01; micro:bit v1.0.1 with nRF51822",
        soft_reboot="soft reboot",
        heap=16 * 1024,
        free=9264,
        # the nRF51822's whole flash (the image kept by flash=PATH); files get what the
        # firmware leaves of it
        flash_size=256 * 1024,
        block_size=1024,
        raw_paste=False,
        freq=16_000_000,
        # the micro:bit's USB belongs to its interface chip, which stays up over a reset
        usb=False,
        baudrate=115200,
        qemu_machine="microbit",
        firmware=MICROBIT_FIRMWARE,
    ),
}

_FIELDS = {f.name: f for f in dataclasses.fields(Profile)}


def _coerce(profile_name: str, key: str, value: Any, where: str) -> Any:
    """Check one TOML value against the field's type; tuples arrive as TOML arrays."""
    default = getattr(BUILTIN_PROFILES["generic"], key)
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise EmulatorError(f"{where}: [{profile_name}] {key} must be an array, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise EmulatorError(f"{where}: [{profile_name}] {key} must be true or false")
        return value
    if not isinstance(value, type(default)) or isinstance(value, bool):
        raise EmulatorError(
            f"{where}: [{profile_name}] {key} must be a {type(default).__name__}, got {value!r}"
        )
    return value


def _load_file(path: str) -> dict[str, Profile]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise EmulatorError(f"cannot read the profiles file {path!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise EmulatorError(f"profiles file {path!r} is not valid TOML: {exc}") from exc
    known: dict[str, Profile] = dict(BUILTIN_PROFILES)
    found: dict[str, Profile] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise EmulatorError(f"{path}: {name!r} must be a table ([{name}])")
        base_name = table.get("base")
        if base_name not in known:
            raise EmulatorError(
                f"{path}: [{name}] needs base = one of {', '.join(sorted(known))}"
                f" (got {base_name!r})"
            )
        changes: dict[str, Any] = {"name": name}
        for key, value in table.items():
            if key == "base":
                continue
            if key not in _FIELDS or key == "name":
                valid = ", ".join(sorted(k for k in _FIELDS if k != "name"))
                raise EmulatorError(f"{path}: [{name}] unknown key {key!r}; valid keys: {valid}")
            changes[key] = _coerce(name, key, value, path)
        if changes.get("qemu_machine") or known[base_name].qemu_machine:
            # real firmware: nothing of the unix port's board disguise applies, and QEMU's
            # UART has no pacing of its own: the link gives it a line rate
            changes["disguise"] = False
            if not changes.get("baudrate", known[base_name].baudrate):
                changes["baudrate"] = 115200
            fw = changes.get("firmware")
            if fw and not os.path.isabs(fw):
                # a relative firmware path is the profiles file's neighbour
                changes["firmware"] = os.path.join(os.path.dirname(os.path.abspath(path)), fw)
        prof = dataclasses.replace(known[base_name], **changes)
        known[name] = found[name] = prof
    return found


def load_profile(name: str, profiles_file: str | None = None) -> Profile:
    """Return the profile called ``name``: a built-in one or one from the profiles file.

    ``profiles_file`` defaults to ``$MP_MOCK_PROFILES``.  An unknown name is an
    :class:`EmulatorError` listing the valid ones.
    """
    path = profiles_file or os.environ.get(PROFILES_ENV) or None
    user = _load_file(path) if path else {}
    if name in user:
        return user[name]
    if name in BUILTIN_PROFILES:
        return BUILTIN_PROFILES[name]
    valid = ", ".join([*BUILTIN_PROFILES, *user])
    raise EmulatorError(f"unknown emulator profile {name!r}; valid profiles: {valid}")
