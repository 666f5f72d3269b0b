# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# The board set-up, run once per engine start before the REPL (MicroPython).
#
# Containment in the language (the operating system confines the process as well, see
# sandbox.py): everything here runs inside setup(), whose locals die with it; what code on
# the board can reach afterwards holds no host module:
# - the fake modules (os, sys, vfs, time, ...) are real module objects whose dicts hold
#   only the board's names; the host functions they need are in closures (not inspectable);
# - the import hook keeps the fakes in the interpreter's own table of loaded modules, so a
#   re-import (even with builtins.__import__ deleted) finds the fake, never the host module;
#   code sees a sys.modules of its own (the board's modules only);
# - this module's globals are emptied at the end (functions defined here would otherwise
#   lead to them through __globals__), and it leaves sys.modules.


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
        self.f.flush()

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
    "sync",
)
# the BBC micro:bit's flat filesystem: exactly these
_OS_FLAT = ("remove", "listdir", "size", "uname")
# the unix port's own modules (help('modules') of the engine), to list the board's
_ENGINE_MODULES = (
    "__main__ _asyncio _thread argparse array asyncio binascii builtins cmath collections "
    "cryptolib deflate errno framebuf gc hashlib heapq io json machine math micropython mip "
    "os platform random re requests select socket ssl struct sys termios time tls uasyncio "
    "uctypes vfs websocket"
).split()
_DECORATOR = ("native", "viper", "asm_thumb", "asm_xtensa", "asm_rv32")
_SYS_OLD_DROP = ("path", "maxsize", "atexit", "settrace", "ps1", "ps2", "tracebacklimit")
# what a 1.9 board (the micro:bit's 1.9.2) has of sys, micropython and gc: exactly these
_SYS_OLD = (
    "version version_info implementation platform byteorder exit print_exception".split()
)
_MICROPYTHON_OLD = (
    "const opt_level mem_info qstr_info stack_use heap_lock heap_unlock kbd_intr".split()
)
_GC_OLD = "collect disable enable isenabled mem_free mem_alloc threshold".split()
# a 1.9 board's modules that are the engine's own (compiled in, so imported without a search
# of the filesystem, as 1.9 does: a file never shadows them), and its only "u" names
_ENGINE_OLD = ("array", "builtins", "collections", "math", "random", "struct")
_U_OLD = ("ucollections", "ustruct", "utime")
# the flat filesystem of a 1.9 board takes "/" as part of a name; on the flash it is this
_FLAT_SLASH = "\x1f"
# how many modules code can import from a 1.9 board's flash before each reset
_SPARE_MODULES = 24


def setup(cfg, ctl_fd, cause):
    import sys
    import os
    import vfs
    import builtins
    import gc
    import _mpmock
    import micropython
    from collections import namedtuple

    # (@micropython.native below: native code adds no traceback entry, so an error raised
    # through these wrappers shows as the board's own, no "_mpmock_board.py" line)

    g = globals()
    missing = set(cfg["missing"])
    old = tuple(cfg["version"]) < (1, 10, 0)
    flat = "os.stat" in missing
    _mpmock.cfg = cfg
    _mpmock.cause = cause
    ctl = open("/dev/fd/%d" % ctl_fd, "wb")
    loaded = sys.modules  # the interpreter's own table (code sees another one)

    def new_module(name):
        # a real module object: import an empty module file, then rename it
        loaded.pop("_mpmock_empty", None)
        m = __import__("_mpmock_empty")
        del loaded["_mpmock_empty"]
        m.__name__ = name
        del m.__file__
        return m

    def signal(code):
        # Tell the relay (host side) to reset the board; it kills this process at once.
        # (unbuffered: no flush, which is fsync() here, EINVAL on a pipe, raised into the
        # board's code when the relay had not ended it by then)
        ctl.write(code)
        while True:
            time_sleep_ms(1000)

    import time as real_time

    time_sleep_ms = real_time.sleep_ms
    _mpmock._signal = signal

    fakes = {}
    inits = {}  # module -> what its first import does (prints, on the micro:bit)
    board = []
    impl = {"machine": "_machine_legacy" if old else "_machine"}
    for name in cfg["modules"]:
        if name not in missing:
            impl[name] = "_" + name
    for name, file in impl.items():
        gc.collect()  # compiling needs room; the last module's leftovers are garbage
        inner = __import__(file)
        board.append(file)
        # what code sees: the module's public names only (its functions keep their own
        # module, with the helpers, as their globals)
        m = new_module(name)
        for k in dir(inner):
            if k[:1] == "_" or k == "record":
                continue
            v = getattr(inner, k)
            if type(v) is type(sys):
                continue
            setattr(m, k, v)
        fakes[name] = m
        if hasattr(inner, "_init"):
            inits[name] = inner._init
    flash = None
    if cfg["flash"]:
        f = open(cfg["flash"], "r+b")
        flash = _Flash(f, cfg["block_size"], cfg["flash_size"] // cfg["block_size"])

    # os
    fos = new_module("os")
    if flat:
        names = _OS_FLAT
    else:
        names = [n for n in _OS_NAMES if hasattr(os, n) and "os." + n not in missing]
    for name in names:
        if hasattr(os, name):
            setattr(fos, name, getattr(os, name))
    U = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))
    u = U(cfg["sysname"], cfg["nodename"], cfg["release"], cfg["uversion"], cfg["machine"])

    @micropython.native
    def uname():
        return u

    fos.uname = uname
    if not flat and not hasattr(fos, "sync"):

        @micropython.native
        def sync():
            pass

        fos.sync = sync
    if not flat:

        @micropython.native
        def dupterm(*a):
            return None

        fos.dupterm = dupterm
    if flat:
        # 1.9: a missing file is OSError('file not found',), and os.size() for os.stat();
        # a name is any string: "d/x.txt" is a file of the flat filesystem, not a path
        stat = os.stat
        remove = os.remove
        listdir = os.listdir
        real_open = builtins.open
        SLASH = _FLAT_SLASH

        @micropython.native
        def size(path):
            try:
                return stat(path.replace("/", SLASH))[6]
            except OSError:
                raise OSError("file not found")

        @micropython.native
        def remove_(path):
            try:
                remove(path.replace("/", SLASH))
            except OSError:
                raise OSError("file not found")

        @micropython.native
        def listdir_(*path):
            # (the board's takes no argument; a path is still accepted here, as before)
            return [n.replace(SLASH, "/") for n in listdir(*path)]

        @micropython.native
        def open_(name, mode="r", *args, **kw):
            if mode not in ("r", "w", "rb", "wb", "rt", "wt"):
                raise ValueError("illegal mode")
            if type(name) is str:
                if len(name) > 120:
                    raise OSError("file not found")  # the board's longest name: 120
                name = name.replace("/", SLASH)
            try:
                return real_open(name, mode, *args, **kw)
            except OSError:
                raise OSError("file not found")

        fos.size = size
        fos.remove = remove_
        fos.listdir = listdir_
        builtins.open = open_
    fakes["os"] = fos

    # sys
    fsys = new_module("sys")
    for name in dir(sys):
        if name.startswith("__") or name == "modules":
            continue
        if (old and name not in _SYS_OLD) or name == "executable":
            continue
        setattr(fsys, name, getattr(sys, name))
    v = tuple(cfg["version"])
    fsys.platform = cfg["platform"]
    fsys.version = "3.4.0; MicroPython v%s on %s" % (
        cfg["release"],
        cfg["uversion"].split(" on ")[-1],
    )
    if old:
        # 1.9 boards report a 3-tuple and no _machine
        fsys.version = "3.4.0"
        I = namedtuple("implementation", ("name", "version"))
        fsys.implementation = I("micropython", v)
    else:
        I = namedtuple("implementation", ("name", "version", "_machine", "_mpy"))
        fsys.implementation = I("micropython", v + ("",), cfg["machine"], sys.implementation._mpy)
    visible = {}  # sys.modules as code sees it: the modules it imported
    if not old:
        # (a 1.9 board has no sys.argv, sys.modules, sys.stdin/stdout/stderr)
        fsys.argv = []
        fsys.modules = visible
    fakes["sys"] = fsys

    if old:
        # micropython and gc as 1.9 has them; gc.mem_alloc() counts what code allocated
        # since the board booted (the ballast that sizes the RAM is not the board's)
        fmp = new_module("micropython")
        for name in _MICROPYTHON_OLD:
            if hasattr(micropython, name):
                setattr(fmp, name, getattr(micropython, name))
        fakes["micropython"] = fmp
        fgc = new_module("gc")
        for name in _GC_OLD:
            if hasattr(gc, name):
                setattr(fgc, name, getattr(gc, name))
        mem_alloc_ = gc.mem_alloc
        base = _mpmock._alloc_base

        @micropython.native
        def mem_alloc():
            n = mem_alloc_() - base[0]
            return n if n > 0 else 0

        fgc.mem_alloc = mem_alloc
        fakes["gc"] = fgc
        for name in _ENGINE_OLD:
            if name not in missing:
                fakes[name] = __import__(name)

    if "vfs" not in missing:
        fvfs = new_module("vfs")
        for name in ("mount", "umount", "VfsLfs2", "VfsFat"):
            if hasattr(vfs, name):
                setattr(fvfs, name, getattr(vfs, name))
        fakes["vfs"] = fvfs

    if old:
        # a 1.9 board's clock: ticks wrap at 2**30, no time(), localtime() or ticks_cpu()
        ftime = new_module("time")
        PERIOD = 1 << 30
        MASK = PERIOD - 1
        ticks_ms_ = real_time.ticks_ms
        ticks_us_ = real_time.ticks_us

        @micropython.native
        def ticks_ms():
            return ticks_ms_() & MASK

        @micropython.native
        def ticks_us():
            return ticks_us_() & MASK

        @micropython.native
        def ticks_add(t, delta):
            return (t + delta) & MASK

        @micropython.native
        def ticks_diff(a, b):
            return ((a - b + PERIOD // 2) & MASK) - PERIOD // 2

        ftime.sleep = real_time.sleep
        ftime.sleep_ms = real_time.sleep_ms
        ftime.sleep_us = real_time.sleep_us
        ftime.ticks_ms = ticks_ms
        ftime.ticks_us = ticks_us
        ftime.ticks_add = ticks_add
        ftime.ticks_diff = ticks_diff
        fakes["time"] = ftime

    fakes["_mpmock"] = _mpmock
    try:
        del _mpmock.__file__
    except (AttributeError, KeyError):
        pass
    # Modules of the unix port a board does not have, and that could reach the host.
    blocked = {"termios", "ffi", "jni", "_libc", "uctypes", "_mpmock_board", "_mpmock_empty"}
    for name in missing:
        if "." not in name:
            blocked.add(name)
    for name in board:
        blocked.add(name)
    protected = set(fakes)
    for name in list(fakes):
        if name[:1] != "_" and (not old or "u" + name in _U_OLD):
            fakes["u" + name] = fakes[name]
            protected.add("u" + name)
    if old:
        # no other "u" name: uos, urandom, ... are ImportError on a 1.9 board
        for name in list(fakes) + _ENGINE_MODULES:
            if name[:1] != "_" and "u" + name not in protected:
                blocked.add("u" + name)
    for name in blocked:
        if name not in protected and name[:7] != "_mpmock":
            # an empty module in the interpreter's table: even without the import hook a
            # re-import of a host module finds this, never the host's
            fakes_blocked = new_module(name)
            loaded[name] = fakes_blocked
            protected.add(name)
    for name in list(loaded):
        if name not in protected:
            del loaded[name]
    for name in fakes:
        if name != "_mpmock":
            loaded[name] = fakes[name]
        else:
            protected.discard(name)
            loaded.pop(name, None)  # (the registry is served by the hook alone)
    orig = builtins.__import__

    shown = set()  # what was put into the sys.modules code sees
    # module objects for what code imports from the flash (code cannot make modules: see
    # load_flat), made now, in the set-up's RAM
    spares = [new_module("_") for _ in range(_SPARE_MODULES)] if old else []

    def resync():
        # a module code deleted from its sys.modules is imported again (one being imported
        # right now, not shown yet, stays)
        for k in list(loaded):
            if k in shown and k not in visible:
                del loaded[k]
                shown.discard(k)

    @micropython.native
    def load_flat(name):
        # A 1.9 board imports NAME.py from its flat filesystem (no packages, no .mpy).  Done
        # here, not by the engine's import, whose path buffer alone (PATH_MAX on the C stack)
        # needs more than the board's whole stack.  As on the board, a module whose code
        # failed stays imported (as far as it got).
        try:
            f = builtins.open(name.replace(".", "/") + ".py")
        except OSError:
            f = None
        if f is None or "." in name:
            raise ImportError("no module named '%s'" % name)
        if not spares:
            f.close()
            return orig(name)
        try:
            code = builtins.compile(f.read(), name + ".py", "exec")
        finally:
            f.close()
        m = spares.pop()
        m.__name__ = name
        loaded[name] = visible[name] = m
        shown.add(name)
        builtins.exec(code, m.__dict__)
        return m

    @micropython.native
    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            top = name.split(".")[0]
            if top in blocked or (top[:1] == "u" and top[1:] in blocked):
                raise ImportError("no module named '%s'" % name)
            m = fakes.get(top)
            if m is not None and top == name:
                if inits and name in inits:
                    inits.pop(name)()
                return m
            if name in visible:
                return visible[name] if fromlist or "." not in name else visible[top]
            if old:
                return load_flat(name)
        resync()
        m = orig(name, globals, locals, fromlist, level)
        for k in loaded:
            if k not in protected and k not in visible:
                visible[k] = loaded[k]
                shown.add(k)
        return m

    builtins.__import__ = _import

    # help('modules') lists the board's modules, not the engine's
    listed = [n for n in _ENGINE_MODULES if n not in blocked] + [n for n in impl]
    if old:
        listed += ["ucollections", "ustruct", "utime"]
    listed = sorted(set(listed))
    real_help = builtins.help

    @micropython.native
    def help_(*args):
        if args and args[0] == "modules":
            rows = (len(listed) + 3) // 4
            for r in range(rows):
                row = [listed[c * rows + r] for c in range(4) if c * rows + r < len(listed)]
                print("".join(["%-18s" % x for x in row[:-1]]) + row[-1])
            print("Plus any modules on the filesystem")
            return None
        return real_help(*args)

    builtins.help = help_

    if old:
        # 1.9's dir() of a module: the module's own names (1.29 adds __class__ and __dict__)
        real_dir = builtins.dir
        ModuleType = type(sys)
        hidden = ("__class__", "__dict__")

        @micropython.native
        def dir_(*args):
            if not args:
                return real_dir()
            names = real_dir(*args)
            if type(args[0]) is ModuleType:
                names = [n for n in names if n not in hidden]
            return names

        builtins.dir = dir_

    if not cfg["emitters"]:
        # a firmware built without the native emitters: @micropython.native/viper/asm_* is
        # the compiler's own error ("invalid micropython decorator") in exec/eval/compile
        real_exec = builtins.exec
        real_eval = builtins.eval
        real_compile = builtins.compile
        decorators = _DECORATOR

        @micropython.native
        def no_emit(src):
            if type(src) is bytes:
                src = src.decode()
            if type(src) is not str or "@micropython." not in src:
                return src
            for d in decorators:
                src = src.replace("@micropython." + d, "@micropython._no_" + d)
            return src

        @micropython.native
        def exec_(src, *args):
            return real_exec(no_emit(src), *args)

        @micropython.native
        def eval_(src, *args):
            return real_eval(no_emit(src), *args)

        @micropython.native
        def compile_(src, *args):
            return real_compile(no_emit(src), *args)

        builtins.exec = exec_
        builtins.eval = eval_
        builtins.compile = compile_

    stat = getattr(os, "stat")
    print_exception = sys.print_exception
    board_open = builtins.open

    def scripts(run_main):
        names = []
        for name in ("boot.py", "main.py") if run_main else ("boot.py",):
            try:
                stat(name)
                names.append(name)
            except OSError:
                pass
        return names

    @micropython.native
    def run_scripts(run_main, g):
        # as a board at reset: boot.py, then main.py, in the REPL's globals; an error is
        # printed and the board goes on (to main.py, then the REPL)
        for name in scripts(run_main):
            try:
                f = board_open(name)
                src = f.read()
                f.close()
                code = compile(src, name, "exec")
                src = None
                exec(code, g)
            except SystemExit:
                pass
            except BaseException as e:
                print_exception(e)

    _mpmock._run_scripts = run_scripts

    def activate(reset_cause, run_main=-1):
        # Run by the relay (raw REPL, out of the host's sight) when this engine becomes the
        # board: mount its flash, say why it booted, give it the profile's RAM.
        _mpmock.cause = reset_cause
        if flash is not None:
            try:
                vfs.mount(vfs.VfsLfs2(flash), "/")
            except OSError:
                vfs.VfsLfs2.mkfs(flash)
                vfs.mount(vfs.VfsLfs2(flash), "/")
            os.chdir("/")
        if run_main >= 0 and scripts(run_main):
            print("S")  # (the relay runs them once the board has its RAM)
        _mpmock._shrink()

    _mpmock._activate = activate

    # From here on the host filesystem is gone: code on the board sees only its flash.
    # (The flash is mounted when the board is activated: a spare engine waits booted but
    # unmounted while another one still writes to the same image.)
    os.chdir("/")
    vfs.umount("/")
    sys.path[:] = [""] if old else ["", ".frozen", "/lib"]
    # nothing of the host's may stay in the board's reach (see the top of this file)
    cfg.pop("board_dir", None)
    cfg.pop("flash", None)
    for k in list(g):
        if k != "__name__":
            del g[k]
    gc.collect()
