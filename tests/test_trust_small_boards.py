"""Files on the small boards with the default chunk sizes: the BBC micro:bit's real 1.9.2
firmware in QEMU (``mpmock://microbit``, ~8 KB free when the wrapper goes in) and the
emulated 16 KB ``legacy`` board.

A write chunk travels as a bytes literal of up to 4x its size, and the raw REPL of 1.9 keeps
a line buffer as long as the longest line it was ever sent: the default chunk is chosen from
the board's free memory (its capabilities, else what the board had free when the checked
wrapper was installed), so that ``fs.write`` works at once, without first running out of
memory and halving (which leaves ``chunk_size`` set).
"""

from __future__ import annotations

import pytest

from pytest_mpsession.session import DeviceSessionManager, FileInfo

pytestmark = pytest.mark.timeout(120)

DATA = bytes(range(256)) * 3 + b"end"


@pytest.mark.parametrize("probe", [False, True], ids=["unprobed", "capabilities"])
@pytest.mark.parametrize("profile", ["microbit", "legacy"])
def test_files_with_the_default_chunks(profile: str, probe: bool) -> None:
    manager = DeviceSessionManager.connect(f"mpmock://{profile}", timeout=10)
    try:
        if probe:
            free = manager.capabilities.memory_free
            assert free is not None and free < 32 * 1024
        with manager.create_session() as session:
            fs = session.fs
            assert fs.chunk_size is None
            assert fs.write_chunk_size() == 64  # under 12 KB free: a micro:bit's size
            assert fs.write("mps_round.bin", DATA) is True
            assert fs.chunk_size is None, "the default chunk ran out of memory and was halved"
            assert fs.read("mps_round.bin") == DATA
            assert fs.write("mps_round.bin", DATA) is False  # the same content: not written
            assert fs.refresh_directory(".")["mps_round.bin"] == FileInfo(len(DATA), "file")
            fs.remove("mps_round.bin")
            assert "mps_round.bin" not in fs.listdir()
    finally:
        manager.close()


def test_the_chunk_follows_the_free_memory_the_wrapper_saw() -> None:
    # no capabilities: what the board had free when the communicator installed its wrapper
    manager = DeviceSessionManager.connect("mpmock://generic", timeout=10)
    try:
        assert manager.known_capabilities is None
        with manager.create_session() as session:
            session.exec("x = 1")  # the wrapper is in
            free = manager.communicator.free_at_install  # type: ignore[attr-defined]
            assert isinstance(free, int) and free > 128 * 1024
            assert session.fs.write_chunk_size() == 4096
    finally:
        manager.close()


def test_a_helper_piece_without_room_goes_one_definition_at_a_time() -> None:
    # A piece of several definitions the board has no memory for (a fragmented heap) is
    # sent again one definition per exchange, each checked; the helpers then work.
    from pytest_mpsession.errors import MpSessionError

    manager = DeviceSessionManager.connect("mpmock://legacy", timeout=10)
    try:
        comm = manager.communicator
        install = comm.install_code  # type: ignore[attr-defined]
        sent: list[str] = []

        def no_room_for_two(code: str, timeout: float | None = None) -> None:
            sent.append(code)
            if code.count("\ndef ") + code.startswith("def ") > 1:
                raise MpSessionError(
                    f"{comm.port}: board code could not be installed intact "
                    "(b'MemoryError: memory allocation failed, allocating 520 bytes')"
                )
            install(code, timeout)

        comm.install_code = no_room_for_two  # type: ignore[attr-defined]
        with manager.create_session() as session:
            session.fs.write("mps_one.txt", b"one")
            assert session.fs.read("mps_one.txt") == b"one"
            assert session.fs.listdir().count("mps_one.txt") == 1
            session.fs.remove("mps_one.txt")
        several = [c for c in sent if c.count("\ndef ") + c.startswith("def ") > 1]
        assert several, "no piece of several definitions was sent"
        for name in ("_mps_fr", "_mps_fl", "_mps_fw", "_mps_fh"):
            alone = [c for c in sent if c.startswith(f"def {name}(")]
            assert alone and alone[-1].count("\ndef ") == 0, name
    finally:
        manager.close()
