"""The board's flash image: a littlefs image of the profile's geometry, and nothing else.

``flash=PATH`` names a host file the board keeps its filesystem in across runs.  Whatever is
at PATH that is not such an image is left byte-for-byte alone, with a one-line error naming
the file and what to do: an ordinary file, an image of another size or block size, a FIFO,
a device, a socket, a directory, a missing folder.  A new image is created (exclusively, so
a file appearing meanwhile is not overwritten); an erased one (all 0x00 or 0xFF, as created
here) is formatted by the board when it boots.  While a board uses an image it holds a lock
on it: a second process (or board) gets "flash image in use by pid N".
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct

from pytest_mpsession.emulator.engine import EmulatorError

__all__ = ["FlashImage", "check_image"]

_MAGIC = b"littlefs"
_FIX = "give flash= a new file name (it is created) or an image this profile made"


def _holder(st: os.stat_result) -> int | None:
    """The pid holding a lock on the file (from /proc/locks), if it can be found."""
    dev = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5] == dev and parts[4].isdigit():
                    return int(parts[4])
    except OSError:
        return None
    return None


def check_image(data: bytes, size: int, block_size: int) -> str | None:
    """Why ``data`` is not a flash image of this geometry (None: it is one, or erased)."""
    if len(data) != size:
        return f"it is {len(data)} bytes, this profile's flash is {size}"
    if data.count(0) == len(data) or data.count(0xFF) == len(data):
        return None  # erased: the board formats it
    for block in (0, 1):
        off = block * block_size
        if data[off + 8 : off + 16] == _MAGIC:
            bs, count = struct.unpack_from("<II", data, off + 24)
            if bs != block_size or count != size // block_size:
                return (
                    f"it is the littlefs image of another board ({count} blocks of {bs} "
                    f"bytes; this profile: {size // block_size} of {block_size})"
                )
            return None
    return "it is not a littlefs flash image"


class FlashImage:
    """An open, locked flash image for one board (``path`` is absolute)."""

    def __init__(self, path: str, size: int, block_size: int, *, profile: str) -> None:
        self.path = os.path.abspath(path)
        where = f"flash={path!r}"
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise EmulatorError(
                f"{where}: the folder {folder!r} does not exist; create it or give another path"
            )
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise EmulatorError(f"{where}: cannot use it: {exc.strerror}") from exc
        if st is not None and not stat.S_ISREG(st.st_mode):
            kind = (
                "a directory"
                if stat.S_ISDIR(st.st_mode)
                else "a FIFO"
                if stat.S_ISFIFO(st.st_mode)
                else "a socket"
                if stat.S_ISSOCK(st.st_mode)
                else "a device"
            )
            raise EmulatorError(f"{where} is {kind}, not a flash image; {_FIX}")
        flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
        created = False
        try:
            if st is None:
                self.fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            else:
                self.fd = os.open(self.path, flags)
        except FileExistsError:
            raise EmulatorError(f"{where} appeared while it was being created; try again") from None
        except OSError as exc:
            raise EmulatorError(f"{where}: cannot open it: {exc.strerror}") from exc
        try:
            st2 = os.fstat(self.fd)
            if not stat.S_ISREG(st2.st_mode):  # replaced between the look and the open
                raise EmulatorError(f"{where} is not an ordinary file; {_FIX}")
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                pid = _holder(st2)
                who = f"pid {pid}" if pid is not None else "another process"
                raise EmulatorError(
                    f"{where}: flash image in use by {who}; close that board first or give "
                    "another path"
                ) from None
            if created:
                os.ftruncate(self.fd, size)
            else:
                data = os.pread(self.fd, st2.st_size + 1, 0)
                why = check_image(data, size, block_size)
                if why is not None:
                    raise EmulatorError(
                        f"{where} is not a flash image of the {profile!r} profile: {why}; {_FIX}"
                    )
        except BaseException:
            os.close(self.fd)
            if created:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass
            raise

    def close(self) -> None:
        """Release the lock (the image stays)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
