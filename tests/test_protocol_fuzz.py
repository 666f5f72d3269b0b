"""Property tests: whatever bytes the board sends, the engine never hangs and raises nothing
but ProtocolError; and however a valid reply is split, the events are the same."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mpsession.errors import ProtocolError
from pytest_mpsession.protocol.engine import (
    NEED_DATA,
    Event,
    ExecFinished,
    ExecStarted,
    RawReplClient,
    RawReplEntered,
    State,
    Stderr,
    Stdout,
)

BANNER = b"raw REPL; CTRL-B to exit\r\n>"

# Bytes that matter to the protocol, mixed in often so the fuzzer reaches deep states.
TOKENS = [
    b"\x01",
    b"\x04",
    b">",
    b"OK",
    b"R\x01",
    b"R\x00",
    b"\x80\x00",
    BANNER,
    b">>> ",
    b"raw REPL",
    b"\r\n",
]
chunks = st.lists(
    st.one_of(st.binary(max_size=40), st.sampled_from(TOKENS)),
    max_size=30,
)


def _ready() -> RawReplClient:
    client = RawReplClient(raw_chunk=16)
    client.enter_raw_repl()
    client.receive_data(BANNER)
    assert client.next_event() == RawReplEntered()
    return client


def _start(name: str) -> RawReplClient:
    """A client put in one of the states where the board's bytes are parsed."""
    if name == "unknown":
        return RawReplClient()
    if name == "entering":
        client = RawReplClient()
        client.enter_raw_repl()
        return client
    client = _ready()
    if name == "paste":
        client.exec(b"print('hello')\n" * 20)
    elif name == "raw":
        client.exec(b"print(1)\n" * 20, raw_paste=False)
    elif name == "soft":
        client.soft_reset()
    elif name == "leave":
        client.leave_raw_repl()
    elif name == "sync":
        client.sync()
    return client


def drive(client: RawReplClient, pieces: list[bytes]) -> list[Event]:
    """Feed every piece, draining events and output after each; bounded so a hang fails."""
    out: list[Event] = []
    for piece in pieces:
        client.receive_data(piece)
        # Every event consumes input, so more events than bytes (plus a few) is a hang.
        for _ in range(len(piece) + 5):
            ev = client.next_event()
            client.data_to_send()
            if ev is NEED_DATA:
                break
            assert not isinstance(ev, type(NEED_DATA))
            out.append(ev)
        else:
            raise AssertionError(f"next_event never returned NEED_DATA in {client.state}")
    return out


STARTS = ["unknown", "entering", "ready", "paste", "raw", "soft", "leave", "sync"]


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from(STARTS), pieces=chunks)
def test_arbitrary_bytes_raise_only_protocol_error(start: str, pieces: list[bytes]) -> None:
    client = _start(start)
    try:
        drive(client, pieces)
    except ProtocolError as exc:
        assert str(exc)
        assert "\n" not in str(exc)  # one line
        assert client.state is State.ERROR
        # and a resync always brings it back
        client.enter_raw_repl()
        assert drive(client, [b"junk", BANNER]) == [RawReplEntered()]


COMMANDS: list[Callable[[RawReplClient], bytes]] = [
    lambda c: c.enter_raw_repl(),
    lambda c: c.exec(b"x=1\n" * 50),
    lambda c: c.exec(b"x=1\n" * 50, raw_paste=False),
    lambda c: c.interrupt(),
    lambda c: c.soft_reset(),
    lambda c: c.leave_raw_repl(),
    lambda c: c.sync(),
    lambda c: c.data_to_send(),
]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=len(COMMANDS) - 1),
            st.one_of(st.binary(max_size=20), st.sampled_from(TOKENS)),
        ),
        max_size=40,
    )
)
def test_any_mix_of_commands_and_bytes(steps: list[int | bytes]) -> None:
    client = RawReplClient(raw_chunk=8)
    for step in steps:
        try:
            if isinstance(step, int):
                COMMANDS[step](client)
            else:
                drive(client, [step])
        except ProtocolError:
            pass


@settings(max_examples=200, deadline=None)
@given(
    stdout=st.binary(max_size=300).map(lambda b: b.replace(b"\x04", b"")),
    stderr=st.binary(max_size=100).map(lambda b: b.replace(b"\x04", b"")),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=10),
    paste=st.booleans(),
)
def test_any_split_of_a_reply_gives_the_same_outcome(
    stdout: bytes, stderr: bytes, cuts: list[int], paste: bool
) -> None:
    client = _ready()
    client.exec(b"code", raw_paste=paste)
    reply = (b"R\x01\x80\x00\x01\x04" if paste else b"OK") + stdout + b"\x04" + stderr + b"\x04>"
    bounds = sorted({0, len(reply), *(c for c in cuts if c < len(reply))})
    pieces = [reply[a:b] for a, b in itertools.pairwise(bounds)]
    evs = drive(client, pieces)
    out = b"".join(e.data for e in evs if isinstance(e, Stdout))
    err = b"".join(e.data for e in evs if isinstance(e, Stderr))
    assert (out, err) == (stdout, stderr)
    assert ExecStarted() in evs and evs[-1] == ExecFinished()
    assert client.state is State.READY


@settings(max_examples=100, deadline=None)
@given(noise=st.binary(max_size=2000), cut=st.integers(min_value=1, max_value=64))
def test_banner_is_found_after_any_noise(noise: bytes, cut: int) -> None:
    client = RawReplClient()
    client.enter_raw_repl()
    data = noise + b"\r\n" + BANNER
    evs = drive(client, [data[i : i + cut] for i in range(0, len(data), cut)])
    assert evs[0] == RawReplEntered()
    assert client.state is State.READY
