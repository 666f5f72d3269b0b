# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# The board set-up, run once per engine start before the REPL (MicroPython).
# Order matters: everything that needs the host's filesystem (the board modules, the flash
# image, the relay's control pipe) is opened first, then the host filesystem is unmounted.
import sys
import os
import vfs
import builtins
import gc
from collections import namedtuple

import _mpmock


class _Module:
    # A module-like object for the fakes that replace built-in modules (sys, os, vfs).
    def __init__(self, name):
        self.__name__ = name

    def __repr__(self):
        return "<module '%s'>" % self.__name__


class _Flash:
    # A block device on the host image file, opened before the host filesystem went away.
    def __init__(self, f, block_size, count):
        self.f = f
        self.bs = block_size
        self.n = count

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        if op == 6:
            return 0
        return None


_OS_NAMES = (
    "chdir",
    "getcwd",
    "ilistdir",
    "listdir",
    "mkdir",
    "remove",
    "rename",
    "rmdir",
    "stat",
    "statvfs",
    "unlink",
    "urandom",
    "sep",
    "mount",
    "umount",
    "VfsLfs2",
    "VfsFat",
    "dupterm",
    "sync",
    "errno",
)


def _fake_os(cfg, missing):
    fake = _Module("os")
    for name in _OS_NAMES:
        if hasattr(os, name) and "os." + name not in missing:
            setattr(fake, name, getattr(os, name))
    U = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
    u = U(cfg["sysname"], cfg["nodename"], cfg["release"], cfg["uversion"], cfg["machine"])
    fake.uname = lambda: u
    if not hasattr(fake, "sync"):
        fake.sync = lambda: None
    if "os.stat" in missing:
        # 1.9-era flat filesystems have os.size() instead of os.stat()
        fake.size = lambda path: os.stat(path)[6]
    fake.dupterm = lambda *a: None
    return fake


def _fake_sys(cfg):
    fake = _Module("sys")
    for name in dir(sys):
        if not name.startswith("__"):
            setattr(fake, name, getattr(sys, name))
    v = tuple(cfg["version"])
    fake.platform = cfg["platform"]
    fake.version = "3.4.0; MicroPython v%s on %s" % (
        cfg["release"],
        cfg["uversion"].split(" on ")[-1],
    )
    if v < (1, 10, 0):
        # 1.9 boards report a 3-tuple and no _machine
        I = namedtuple("implementation", ("name", "version"))
        fake.implementation = I("micropython", v)
    else:
        I = namedtuple("implementation", ("name", "version", "_machine", "_mpy"))
        fake.implementation = I("micropython", v + ("",), cfg["machine"], sys.implementation._mpy)
    fake.argv = []
    return fake


def _fake_vfs():
    fake = _Module("vfs")
    for name in ("mount", "umount", "VfsLfs2", "VfsFat"):
        if hasattr(vfs, name):
            setattr(fake, name, getattr(vfs, name))
    return fake


def _load(name, board_dir):
    # imported relative to the current directory (the board dir), so tracebacks name
    # "_machine.py", not a host path
    return __import__(name)


def setup(cfg, ctl_fd, cause):
    missing = set(cfg["missing"])
    _mpmock.cfg = cfg
    _mpmock.cause = cause
    _mpmock.ctl = open("/dev/fd/%d" % ctl_fd, "wb")
    board_dir = cfg["board_dir"]
    os.chdir(board_dir)
    sys.path[:] = [""]
    fakes = {}
    old = tuple(cfg["version"]) < (1, 10, 0)
    fakes["machine"] = _load("_machine_legacy" if old else "_machine", board_dir)
    for name in cfg["modules"]:
        if name not in missing:
            gc.collect()  # compiling needs room; the last module's leftovers are garbage
            fakes[name] = _load("_" + name, board_dir)
    flash = None
    if cfg["flash"]:
        f = open(cfg["flash"], "r+b")
        flash = _Flash(f, cfg["block_size"], cfg["flash_size"] // cfg["block_size"])
    # From here on the host filesystem is gone: code on the board sees only its flash.
    vfs.umount("/")
    # The flash is mounted when the board is activated (_mpmock._activate): a spare engine
    # waits booted but unmounted while another one still writes to the same image.
    _mpmock._flash = flash
    _mpmock._vfs = vfs
    _mpmock._os = os
    sys.path[:] = ["", ".frozen", "/lib"]
    fakes["os"] = _fake_os(cfg, missing)
    fakes["sys"] = _fake_sys(cfg)
    if "vfs" not in missing:
        fakes["vfs"] = _fake_vfs()
    fakes["_mpmock"] = _mpmock
    # Modules of the unix port a board does not have, and that could reach the host.
    blocked = {"termios", "ffi", "jni", "_libc"}
    for name in missing:
        if "." not in name:
            blocked.add(name)
    for name, mod in fakes.items():
        sys.modules[name] = mod
    orig = builtins.__import__

    def _import(name, *args):
        if not args or len(args) < 4 or args[3] == 0:
            top = name.split(".")[0]
            m = fakes.get(top)
            if m is None and top[:1] == "u" and top[1:] in fakes:
                m = fakes[top[1:]]
            if m is not None and top == name:
                return m
            if top in blocked or (top[:1] == "u" and top[1:] in blocked):
                raise ImportError("no module named '%s'" % name)
        return orig(name, *args)

    builtins.__import__ = _import
    gc.collect()
