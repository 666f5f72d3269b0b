"""How long the session's board helpers take to install on a small board, and whether they
work after it: every part (core, context, thread where the board has threads, fs_read,
fs_write) sent after a soft reset, timed on the host, then a file round trip.

    python tests/benchmarks/helper_install.py [URL ...]     # default: legacy and microbit

Prints, per board, the median and the range of the install over the rounds, the exchanges it
took and the board's free memory after it.
"""

from __future__ import annotations

import statistics
import sys
import time

from pytest_mpsession.session import DeviceSessionManager

PARTS = ("core", "context", "fs_read", "fs_write")
CHUNK = 64  # the write chunk a micro:bit takes


def measure(url: str, rounds: int = 5) -> str:
    manager = DeviceSessionManager.connect(url, timeout=30)
    try:
        comm = manager.communicator
        times: list[float] = []
        exchanges = 0
        free = 0
        for _ in range(rounds):
            comm.soft_reset()
            comm.eval("1")  # the checked-exchange wrapper goes in here (not timed)
            before = manager.exchange_count
            start = time.perf_counter()
            with manager.board(None) as board:
                manager._install(board, PARTS, None)
            times.append(time.perf_counter() - start)
            exchanges = manager.exchange_count - before
            out, _err = comm.exec_raw_unchecked("import gc\ngc.collect()\nprint(gc.mem_free())")
            free = int(out)
            with manager.create_session() as session:
                session.fs.chunk_size = CHUNK
                data = bytes(range(256))
                session.fs.write("bench.bin", data)
                assert session.fs.read("bench.bin") == data
        times.sort()
        return (
            f"{url}: install {statistics.median(times) * 1000:.0f} ms median "
            f"({times[0] * 1000:.0f}-{times[-1] * 1000:.0f} ms, {rounds} rounds), "
            f"{exchanges} exchanges, {free} bytes free after (collected)"
        )
    finally:
        manager.close()


if __name__ == "__main__":
    for url in sys.argv[1:] or ["mpmock://legacy", "mpmock://microbit"]:
        print(measure(url), flush=True)
