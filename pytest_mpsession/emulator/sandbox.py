"""Confinement of the engine process by the operating system (Linux: Landlock and seccomp).

An emulated board runs code a test sends it, and the unix port is a full host program
(``os.system``, ``VfsPosix``, sockets, ``uctypes`` for arbitrary memory of its own process).
Whatever that code does, the engine process must not reach the host, so it is confined by
the kernel before the interpreter runs a single line:

- ``no_new_privs``, then **Landlock**: the process may open, of the whole filesystem, only
  its flash image (read/write) and what the interpreter needs to start (the board's own
  modules and boot script, read-only; for an engine that is a separate executable, that
  executable and the shared libraries it loads); no TCP bind/connect (ABI 4+); no signals
  to and no abstract unix sockets of processes outside the sandbox (ABI 6+);
- **seccomp** (a BPF filter, built here): no ``socket``/``socketpair``, no ``execve`` (an
  executable engine may be started once, by the launcher itself), no new processes (only
  threads), no ``ptrace``/``process_vm_*``, no namespaces, mounts, module loading, BPF,
  ``io_uring``, keyrings; ``kill``/``tgkill`` only to itself;
- all capabilities dropped and an empty environment.

What the kernel offers is decided once per host process (:func:`support`); the launcher
(see :mod:`.engine`) applies the policy in the child, between its start and the first line
of MicroPython.  This file is also executed as a plain script by that launcher (``python
-S``, standard library and ``ctypes`` only), so it imports nothing from the package.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

__all__ = ["CHILD", "Support", "policy", "support", "unavailable_line"]

# ------------------------------------------------------------------------------ Landlock

_SYS_LANDLOCK_CREATE_RULESET = 444
_SYS_LANDLOCK_ADD_RULE = 445
_SYS_LANDLOCK_RESTRICT_SELF = 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_TRUNCATE = 1 << 14
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | (1 << 15)
_NET_TCP = 1 | 2  # bind, connect
_SCOPE_ALL = 1 | 2  # abstract unix sockets, signals

# ------------------------------------------------------------------------------- seccomp

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_PR_GET_SECCOMP = 21
_PR_CAPBSET_DROP = 24
_SECCOMP_MODE_FILTER = 2
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_RET_KILL_PROCESS = 0x80000000
_EPERM, _ENOSYS = 1, 38
_CLONE_THREAD = 0x00010000
_CLONE_NS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# (audit arch, the syscall table by name), per machine
_ARCH: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,
        {
            "socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "clone": 56,
            "fork": 57, "vfork": 58, "execve": 59, "kill": 62, "ptrace": 101,
            "rt_sigqueueinfo": 129, "personality": 135, "pivot_root": 155, "chroot": 161,
            "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
            "init_module": 175, "delete_module": 176, "tkill": 200, "kexec_load": 246,
            "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272,
            "rt_tgsigqueueinfo": 297, "perf_event_open": 298, "name_to_handle_at": 303,
            "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
            "process_vm_writev": 311, "kcmp": 312, "finit_module": 313,
            "kexec_file_load": 320, "bpf": 321, "execveat": 322, "userfaultfd": 323,
            "pidfd_send_signal": 424, "io_uring_setup": 425, "io_uring_enter": 426,
            "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
            "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_open": 434, "clone3": 435,
            "pidfd_getfd": 438, "tgkill": 234,
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            "socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "clone": 220,
            "execve": 221, "kill": 129, "ptrace": 117, "rt_sigqueueinfo": 138,
            "personality": 92, "pivot_root": 41, "chroot": 51, "mount": 40, "umount2": 39,
            "swapon": 224, "swapoff": 225, "reboot": 142, "init_module": 105,
            "delete_module": 106, "tkill": 130, "kexec_load": 104, "add_key": 217,
            "request_key": 218, "keyctl": 219, "unshare": 97, "rt_tgsigqueueinfo": 240,
            "perf_event_open": 241, "name_to_handle_at": 264, "open_by_handle_at": 265,
            "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272,
            "finit_module": 273, "kexec_file_load": 294, "bpf": 280, "execveat": 281,
            "userfaultfd": 282, "pidfd_send_signal": 424, "io_uring_setup": 425,
            "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
            "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
            "pidfd_open": 434, "clone3": 435, "pidfd_getfd": 438, "tgkill": 131,
        },
    ),
}  # fmt: skip
_DENIED = (
    "socket", "socketpair", "connect", "bind", "fork", "vfork", "execveat", "ptrace",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "tkill", "pivot_root", "chroot", "mount",
    "umount2", "swapon", "swapoff", "reboot", "init_module", "delete_module", "finit_module",
    "kexec_load", "kexec_file_load", "add_key", "request_key", "keyctl", "unshare", "setns",
    "perf_event_open", "name_to_handle_at", "open_by_handle_at", "process_vm_readv",
    "process_vm_writev", "kcmp", "bpf", "userfaultfd", "pidfd_send_signal", "pidfd_open",
    "pidfd_getfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "open_tree",
    "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "personality",
)  # fmt: skip

_libc_cache: list[ctypes.CDLL] = []


def _libc() -> ctypes.CDLL:
    if not _libc_cache:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.syscall.restype = ctypes.c_long
        lib.prctl.restype = ctypes.c_int
        _libc_cache.append(lib)
    return _libc_cache[0]


class Support:
    """What this kernel offers: the Landlock ABI (0: none) and seccomp filters."""

    def __init__(self, landlock_abi: int, seccomp: bool, arch: str | None) -> None:
        self.landlock_abi = landlock_abi
        self.seccomp = seccomp
        self.arch = arch

    @property
    def full(self) -> bool:
        """Files, execution and network are all confined by the kernel."""
        return self.landlock_abi >= 1 and self.seccomp

    def __repr__(self) -> str:
        return f"Support(landlock_abi={self.landlock_abi}, seccomp={self.seccomp})"


_support: list[Support] = []


def support() -> Support:
    """What the kernel offers, probed once per process."""
    if _support:
        return _support[0]
    abi, seccomp = 0, False
    arch = os.uname().machine if os.uname().machine in _ARCH else None
    if sys.platform.startswith("linux"):
        try:
            lib = _libc()
            r = lib.syscall(
                _SYS_LANDLOCK_CREATE_RULESET,
                None,
                ctypes.c_size_t(0),
                ctypes.c_uint32(_LANDLOCK_CREATE_RULESET_VERSION),
            )
            abi = max(0, int(r))
            seccomp = arch is not None and lib.prctl(_PR_GET_SECCOMP, 0, 0, 0, 0) == 0
        except (OSError, AttributeError):
            pass
    _support.append(Support(abi, seccomp, arch))
    return _support[0]


def unavailable_line(s: Support | None = None) -> str | None:
    """One line saying what confinement this kernel cannot give (None: all of it)."""
    s = s or support()
    missing = []
    if s.landlock_abi < 1:
        missing.append("Landlock (board code could read and write the host's files)")
    if not s.seccomp:
        missing.append("seccomp (board code could run commands and open sockets)")
    if not missing:
        return None
    return "mpmock: this kernel offers no " + " and no ".join(missing) + "; serving loopback only"


_PID, _PTR_LO, _PTR_HI = 0x7EADBEE1, 0x7EADBEE2, 0x7EADBEE3  # filled in by the child

_OWN_TREE = ~(FS_EXECUTE | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 15))


def policy(
    *,
    read_write: list[str],
    read_only: list[str],
    execute: list[str] | None = None,
    tree: list[str] | None = None,
) -> dict[str, object]:
    """The confinement one engine gets: files it may read and write, paths it may read,
    files it may execute, folders it owns (create, remove, rename inside).

    Everything is decided here, in the host process: the launcher (:data:`CHILD`) only
    makes the system calls, so confinement costs the engine's start next to nothing.
    """
    s = support()
    abi = s.landlock_abi
    rules: list[tuple[str, int]] = []
    attr = b""
    if abi:
        fs = _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)]
        net = _NET_TCP if abi >= 4 else 0
        scoped = _SCOPE_ALL if abi >= 6 else 0
        if abi >= 6:
            attr = struct.pack("QQQ", fs, net, scoped)
        elif abi >= 4:
            attr = struct.pack("QQ", fs, net)
        else:
            attr = struct.pack("Q", fs)
        wanted = [(p, FS_READ_FILE | FS_WRITE_FILE | FS_TRUNCATE) for p in read_write]
        wanted += [(p, FS_READ_FILE | FS_READ_DIR) for p in read_only]
        wanted += [(p, FS_READ_FILE | FS_EXECUTE) for p in execute or []]
        wanted += [(p, fs & _OWN_TREE) for p in tree or []]
        for path, access in wanted:
            if not os.path.exists(path):
                continue  # a library folder this system does not have
            if not os.path.isdir(path):
                access &= _FILE_RIGHTS
            rules.append((path, access & fs))
    bpf = _bpf(s.arch, bool(execute)) if s.seccomp and s.arch else b""
    return {"ll": attr, "rules": rules, "bpf": bpf}


def _bpf(arch_name: str, exec_once: bool) -> bytes:
    """The seccomp program (see the module docstring for what it refuses); the child puts
    its pid and, for ``exec_once``, the address of the one path it executes, in place of
    the placeholders."""
    audit, nr = _ARCH[arch_name]
    ld, jeq, jset, jge, ret = 0x20, 0x15, 0x45, 0x35, 0x06
    prog: list[list[int]] = []
    fixups: list[tuple[int, str, str]] = []
    labels: dict[str, int] = {}

    def emit(code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        prog.append([code, jt if isinstance(jt, int) else 0, jf if isinstance(jf, int) else 0, k])
        if isinstance(jt, str) or isinstance(jf, str):
            jt_label = jt if isinstance(jt, str) else ""
            fixups.append((len(prog) - 1, jt_label, jf if isinstance(jf, str) else ""))

    emit(ld, 4)  # arch
    emit(jeq, audit, 1, 0)
    emit(ret, _RET_KILL_PROCESS)
    emit(ld, 0)  # syscall number
    if arch_name == "x86_64":
        emit(jge, 0x40000000, "deny", 0)  # the x32 ABI
    for name in _DENIED:
        if name in nr:  # (aarch64 has no fork, vfork)
            emit(jeq, nr[name], "deny", 0)
    emit(jeq, nr["clone3"], "nosys", 0)  # flags out of reach: libc falls back to clone
    emit(jeq, nr["clone"], "clone", 0)
    emit(jeq, nr["kill"], "self_or_0", 0)
    emit(jeq, nr["tgkill"], "self", 0)
    emit(jeq, nr["execve"], "execve", 0)
    emit(ret, _RET_ALLOW)
    labels["clone"] = len(prog)
    emit(ld, 16)  # args[0], low word: the flags
    emit(jset, _CLONE_NS, "deny", 0)
    emit(jset, _CLONE_THREAD, "allow", "deny")  # threads only, no new processes
    labels["self_or_0"] = len(prog)
    emit(ld, 16)
    emit(jeq, 0, "allow", 0)
    labels["self"] = len(prog)
    emit(ld, 16)
    emit(jeq, _PID, "allow", "deny")
    labels["execve"] = len(prog)
    if exec_once:
        emit(ld, 16)
        emit(jeq, _PTR_LO, 0, "deny")
        emit(ld, 20)
        emit(jeq, _PTR_HI, "allow", "deny")
    else:
        emit(ret, _RET_ERRNO | _EPERM)
    labels["allow"] = len(prog)
    emit(ret, _RET_ALLOW)
    labels["deny"] = len(prog)
    emit(ret, _RET_ERRNO | _EPERM)
    labels["nosys"] = len(prog)
    emit(ret, _RET_ERRNO | _ENOSYS)
    for i, jt_label, jf_label in fixups:
        if jt_label:
            prog[i][1] = labels[jt_label] - i - 1
        if jf_label:
            prog[i][2] = labels[jf_label] - i - 1
        assert 0 <= prog[i][1] < 256 and 0 <= prog[i][2] < 256
    return b"".join(struct.pack("=HBBI", *ins) for ins in prog)


#: The launcher's part (Python, run by ``python -S`` in the engine process before
#: MicroPython): ``confine(P, argv)`` makes the system calls of a policy ``P``, then, for an
#: executable engine, replaces the process by ``argv`` through the one ``execve`` the filter
#: lets through.  ``_ctypes`` alone (not ``ctypes``): a third of the import time.
CHILD = """
def confine(P,x=None):
 import _ctypes as C
 class L(C._SimpleCData):_type_='l'
 class Z(C._SimpleCData):_type_='z'
 class F(C.CFuncPtr):_flags_=C.FUNCFLAG_CDECL|C.FUNCFLAG_USE_ERRNO;_restype_=L
 class Ch(C._SimpleCData):_type_='c'
 def buf(b):
  class A(C.Array):_type_=Ch;_length_=len(b)+1
  return A.from_buffer_copy(b+b'\\0')
 class h:_handle=C.dlopen(None,0)
 sc=F(('syscall',h));pr=F(('prctl',h))
 def ck(r,w):
  if r<0:raise OSError(C.get_errno(),'confinement: '+w)
  return r
 ck(pr(38,1,0,0,0),'no_new_privs')
 if P['ll']:
  fd=ck(sc(444,P['ll'],len(P['ll']),0),'landlock')
  for p,a in P['rules']:
   o=os.open(p,os.O_PATH|os.O_CLOEXEC)
   ck(sc(445,fd,1,a.to_bytes(8,'little')+o.to_bytes(4,'little'),0),'landlock '+p);os.close(o)
  ck(sc(446,fd,0),'landlock');os.close(fd)
 for i in range(64):
  if pr(24,i,0,0,0)<0:break
 cap=126 if os.uname().machine=='x86_64' else 91
 sc(cap,(0x20080522).to_bytes(4,'little')+bytes(4),bytes(24))
 f=P['bpf']
 if x:
  path=buf(os.fsencode(x[0]));ad=C.addressof(path)
  class V(C.Array):_type_=Z;_length_=len(x)+1
  argv=V(*[os.fsencode(a) for a in x]);env=V()
  f=f.replace(b'\\xe2\\xbe\\xad\\x7e',(ad&0xffffffff).to_bytes(4,'little')).replace(b'\\xe3\\xbe\\xad\\x7e',(ad>>32).to_bytes(4,'little'))
 if f:
  f=buf(f.replace(b'\\xe1\\xbe\\xad\\x7e',os.getpid().to_bytes(4,'little')))
  n=(len(f)-1)//8
  ck(pr(22,2,n.to_bytes(8,'little')+C.addressof(f).to_bytes(8,'little'),0,0),'seccomp')
 os.environ.clear()
 if x:
  F(('execve',h))(path,argv,env);raise OSError(C.get_errno(),'cannot start '+x[0])
"""
