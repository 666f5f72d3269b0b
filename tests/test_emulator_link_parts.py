"""The link's sans-IO parts on their own: fault decisions, the legacy line's receive buffer
and line ends (the link itself is tested through boards elsewhere)."""

from __future__ import annotations

import collections

from pytest_mpsession.emulator.faults import Faults
from pytest_mpsession.emulator.legacy_link import CrlfOutput, ReceiveBuffer
from pytest_mpsession.emulator.options import parse_options


def test_faults_repeat_with_their_seed() -> None:
    opts = parse_options({"seed": 5, "garbage": 0.5, "reset": 0.2, "hang": 0.1, "drop": 0.1})
    runs = []
    for _ in range(2):
        f = Faults(opts, collections.Counter())
        runs.append(([f.exchange() for _ in range(50)], f.inbound(bytes(range(200)))))
    assert runs[0] == runs[1]
    fates = [x.fault for x in runs[0][0]]
    assert "reset" in fates and "hang" in fates and None in fates
    assert any(x.garbage for x in runs[0][0])
    data, drop = runs[0][1]
    assert not drop and 100 < len(data) < 200


def test_no_faults_without_options() -> None:
    f = Faults(parse_options({}), collections.Counter())
    assert all(f.exchange().fault is None for _ in range(100))
    assert f.inbound(b"abc") == (b"abc", False)
    assert f.outbound(b"xyz") == (b"xyz", False)


def test_disconnect_after_counts_both_ways() -> None:
    f = Faults(parse_options({"disconnect_after": 10}), collections.Counter())
    assert f.inbound(b"12345") == (b"12345", False)
    assert f.outbound(b"abcdefgh") == (b"abcde", True)  # the 10th byte is the last
    assert f.outbound(b"more") == (b"more", False)  # once only
    assert f.disconnected


def test_receive_buffer_overflows_only_while_full() -> None:
    buf = ReceiveBuffer(256, 1000)
    assert len(buf.take(b"x" * 300, 0.0, running=False)) == 256
    assert buf.overruns == 1
    # running code does not read it: nothing drains
    assert buf.take(b"y", 1.0, running=True) == b""
    # at a prompt it drains at its rate: 0.1 s later, 100 bytes of room
    buf2 = ReceiveBuffer(256, 1000)
    buf2.take(b"x" * 256, 0.0, running=False)
    assert len(buf2.take(b"z" * 200, 0.1, running=False)) == 100
    buf2.emptied()
    assert len(buf2.take(b"w" * 256, 0.1, running=True)) == 256


def test_crlf_across_chunks() -> None:
    crlf = CrlfOutput()
    assert crlf(b"a\nb\r\n") == b"a\r\nb\r\n"
    assert crlf(b"c\r") == b"c\r"
    assert crlf(b"\nd") == b"\nd"  # the pair was split between chunks: no second \r
    assert crlf(b"\n") == b"\r\n"
