"""Just enough ELF to name the function at an address of the engine (for a safe SIGINT).

The unix port turns SIGINT into a longjmp out of the signal handler.  Landing inside the
garbage collector or the allocator that leaves the heap locked for good, so the relay first
stops the engine, looks where it is, and only then lets the signal land (see
:meth:`pytest_mpsession.emulator.engine.Engine.interrupt`).
"""

from __future__ import annotations

import bisect
import struct

__all__ = ["FunctionMap"]


class FunctionMap:
    """Sorted function symbols (``STT_FUNC``) of one ELF64 little-endian object."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.names: list[str] = []
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError(f"{path}: not a 64-bit little-endian ELF object")
        (shoff,) = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [
            struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
        ]
        syms: list[tuple[int, int, str]] = []
        for sh in sections:
            sh_type, offset, size, link, entsize = sh[1], sh[4], sh[5], sh[6], sh[9]
            if sh_type not in (2, 11) or not entsize:  # SHT_SYMTAB, SHT_DYNSYM
                continue
            stroff = sections[link][4]
            for j in range(size // entsize):
                name_off, info, _other, shndx, value, sz = struct.unpack_from(
                    "<IBBHQQ", data, offset + j * entsize
                )
                if info & 0xF != 2 or not value or shndx == 0:  # STT_FUNC, defined
                    continue
                end = data.index(b"\0", stroff + name_off)
                syms.append((value, value + max(sz, 1), data[stroff + name_off : end].decode()))
        syms.sort()
        for start, end, name in syms:
            self.starts.append(start)
            self.ends.append(end)
            self.names.append(name)

    def name_at(self, offset: int) -> str | None:
        """The function containing ``offset`` (relative to the object's load base), if any."""
        i = bisect.bisect_right(self.starts, offset) - 1
        if i >= 0 and offset < self.ends[i]:
            return self.names[i]
        return None


def symbol_address(path: str, name: str) -> int | None:
    """The value (offset from the load base) of the defined symbol ``name``, if any."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    want = name.encode()
    for sh in sections:
        sh_type, offset, size, link, entsize = sh[1], sh[4], sh[5], sh[6], sh[9]
        if sh_type not in (2, 11) or not entsize:
            continue
        stroff = sections[link][4]
        for j in range(size // entsize):
            name_off, _info, _other, shndx, value, _sz = struct.unpack_from(
                "<IBBHQQ", data, offset + j * entsize
            )
            if shndx == 0 or not value:
                continue
            start = stroff + name_off
            if data[start : start + len(want) + 1] == want + b"\0":
                return int(value)
    return None
