"""The sans-IO raw-REPL engine, replayed against byte-exact transcripts of real firmware.

No I/O here: the tests play the board by feeding recorded bytes and check what the engine
sends and which events it reports. The transcripts are ``../shared/transcripts/`` (recorded
from the MicroPython 1.29 unix port and a 1.9.2 micro:bit) and the raw-paste example of
MicroPython's ``docs/reference/repl.rst``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from pytest_mpsession.errors import ProtocolError
from pytest_mpsession.protocol.engine import (
    NEED_DATA,
    TRANSITIONS,
    Event,
    ExecFinished,
    ExecStarted,
    LeftRawRepl,
    RawPasteAccepted,
    RawPasteRefused,
    RawReplClient,
    RawReplEntered,
    SoftResetStarted,
    State,
    Stderr,
    Stdout,
    Stray,
    Synced,
)

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "shared" / "transcripts"
BANNER = b"raw REPL; CTRL-B to exit\r\n>"

# The example of docs/reference/repl.rst ("Raw mode and raw-paste mode"): written at once
# from a fresh friendly-REPL line, and the board's whole answer.
REPL_RST_HOST = b"\x01\x05A\x01print(123)\x04"
REPL_RST_BOARD = b"\r\nraw REPL; CTRL-B to exit\r\n>R\x01\x80\x00\x01\x04123\r\n\x04\x04>"
# ... and the same "broken down over time".
REPL_RST_STEPS = [
    ("host", b"\x01"),
    ("board", b"\r\nraw REPL; CTRL-B to exit\r\n>"),
    ("host", b"\x05A\x01"),
    ("board", b"R\x01\x80\x00\x01"),
    ("host", b"print(123)\x04"),
    ("board", b"\x04"),
    ("board", b"123\r\n\x04\x04>"),
]

Step = tuple[str, str, bytes]  # (section title, "host" | "board", bytes)


def load_transcript(name: str) -> list[Step]:
    """Steps of a transcript file: each ``host -> board`` / ``board -> host`` line."""
    steps: list[Step] = []
    title = ""
    for line in (TRANSCRIPTS / name).read_text().splitlines():
        if line.startswith("## "):
            title = line[3:]
            continue
        m = re.match(r"(host|board) -> (?:board|host): (b'.*')$", line)
        if m:
            data = ast.literal_eval(m.group(2))
            assert isinstance(data, bytes)
            steps.append((title, m.group(1), data))
    return steps


def board_bytes(steps: list[Step], title_part: str) -> bytes:
    """Everything the board sent in the sections whose title contains ``title_part``."""
    return b"".join(d for t, who, d in steps if who == "board" and title_part in t)


def host_bytes(steps: list[Step], title_part: str) -> bytes:
    """Everything the host wrote in the sections whose title contains ``title_part``."""
    return b"".join(d for t, who, d in steps if who == "host" and title_part in t)


def section(steps: list[Step], title: str, who: str) -> bytes:
    """The bytes ``who`` sent in the section titled exactly ``title``."""
    return b"".join(d for t, w, d in steps if w == who and t == title)


def events(client: RawReplClient, data: bytes = b"", *, split: int = 0) -> list[Event]:
    """Feed ``data`` (in pieces of ``split`` bytes, or at once) and collect every event."""
    out: list[Event] = []
    pieces = [data[i : i + split] for i in range(0, len(data), split)] if split else [data]
    for piece in pieces:
        client.receive_data(piece)
        while (ev := client.next_event()) is not NEED_DATA:
            assert not isinstance(ev, type(NEED_DATA))
            out.append(ev)
    return out


def merged(evs: list[Event]) -> list[Event]:
    """Join consecutive Stdout / Stderr pieces, so splits do not change the comparison."""
    out: list[Event] = []
    for ev in evs:
        if out and isinstance(ev, Stdout | Stderr) and type(out[-1]) is type(ev):
            prev = out.pop()
            assert isinstance(prev, Stdout | Stderr)
            out.append(type(ev)(prev.data + ev.data))
        else:
            out.append(ev)
    return out


def send_all(client: RawReplClient, first: bytes) -> bytes:
    """What the host writes: a command's bytes and everything sendable after them."""
    out = first
    while more := client.data_to_send():
        out += more
    return out


def ready_client(raw_chunk: int = 256) -> RawReplClient:
    """A client that has entered the raw REPL."""
    client = RawReplClient(raw_chunk=raw_chunk)
    client.enter_raw_repl()
    assert events(client, b"\r\n>>> \r\n" + BANNER) == [RawReplEntered()]
    return client


# -- the 1.29 unix port transcript ------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 3])
def test_unix_port_transcript(split: int) -> None:
    steps = load_transcript("micropython-1.29-unix-port.txt")
    client = RawReplClient()

    # Power-on chatter, the interrupt, Ctrl-A: the engine sends both writes at once.
    sent = client.enter_raw_repl()
    assert sent == host_bytes(steps, "interrupt twice") + host_bytes(steps, "enter raw REPL")
    chatter = board_bytes(steps, "power-on") + board_bytes(steps, "interrupt twice")
    assert events(client, chatter, split=split) == []
    assert events(client, board_bytes(steps, "enter raw REPL"), split=split) == [RawReplEntered()]
    assert b'Type "help()"' in client.chatter

    # Raw-paste: request, 'R' 0x01 + window 128 + one increment, the code, the outcome.
    assert client.exec(b"print(6*7)") == host_bytes(steps, "raw-paste request")
    reply = board_bytes(steps, "raw-paste request")
    assert merged(events(client, reply, split=split)) == [RawPasteAccepted(128)]
    assert send_all(client, b"") == host_bytes(steps, "raw-paste body")
    assert merged(events(client, board_bytes(steps, "raw-paste body"), split=split)) == [
        ExecStarted(),
        Stdout(b"42\n"),
        ExecFinished(),
    ]

    # Plain raw mode, an exception: OK, no stdout, the traceback on stderr.
    assert send_all(client, client.exec(b"1//0", raw_paste=False)) == host_bytes(
        steps, "exec of an exception"
    )
    evs = merged(events(client, board_bytes(steps, "exec of an exception"), split=split))
    assert evs[0] == ExecStarted() and evs[-1] == ExecFinished()
    assert evs[1] == Stderr(
        b'Traceback (most recent call last):\n  File "<stdin>", line 1, in <module>\n'
        b"ZeroDivisionError: divide by zero\n"
    )

    # A loop that never ends, interrupted (on the unix port the Ctrl-C becomes a SIGINT).
    code = b"while True:\n pass\n"
    assert send_all(client, client.exec(code, raw_paste=False)) == host_bytes(steps, "never ends")
    assert events(client, board_bytes(steps, "never ends"), split=split) == [ExecStarted()]
    assert client.interrupt() == host_bytes(steps, "a Ctrl-C byte")
    evs = merged(events(client, board_bytes(steps, "SIGINT"), split=split))
    assert evs[-1] == ExecFinished(interrupted=True)
    assert isinstance(evs[0], Stderr) and evs[0].data.endswith(b"KeyboardInterrupt: \n")

    # Soft reset: the unix port acknowledges, then its process ends.
    assert client.soft_reset() == host_bytes(steps, "soft reset")
    assert events(client, board_bytes(steps, "soft reset"), split=split) == [SoftResetStarted()]
    assert client.state is State.SOFT_REBOOTING


# -- the 1.9.2 micro:bit transcript -----------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 5])
def test_microbit_transcript(split: int) -> None:
    steps = load_transcript("micropython-1.9.2-microbit.txt")
    client = RawReplClient()
    sent = client.enter_raw_repl()
    assert sent == host_bytes(steps, "interrupt twice") + host_bytes(steps, "enter raw REPL")
    assert events(client, board_bytes(steps, "interrupt twice"), split=split) == []
    assert events(client, board_bytes(steps, "enter raw REPL"), split=split) == [RawReplEntered()]

    # Old firmware answers the raw-paste request with the banner: fall back to plain raw.
    assert client.exec(b"print(6*7)") == host_bytes(steps, "try raw-paste")
    assert events(client, board_bytes(steps, "try raw-paste"), split=split) == [RawPasteRefused()]
    assert send_all(client, b"") == host_bytes(steps, "plain raw exec")
    assert merged(events(client, board_bytes(steps, "plain raw exec"), split=split)) == [
        ExecStarted(),
        Stdout(b"42\r\n"),
        ExecFinished(),
    ]

    for title, code, last in [
        ("exception", b"1//0", b"ZeroDivisionError: division by zero\r\n"),
        ("syntax error", b"def (", b"SyntaxError: invalid syntax\r\n"),
    ]:
        assert send_all(client, client.exec(code, raw_paste=False)) == host_bytes(steps, title)
        evs = merged(events(client, board_bytes(steps, title), split=split))
        assert evs[0] == ExecStarted() and evs[-1] == ExecFinished()
        assert isinstance(evs[1], Stderr) and evs[1].data.endswith(last)

    code = b"while True:\n pass\n"
    assert send_all(client, client.exec(code, raw_paste=False)) == host_bytes(steps, "running loop")
    assert events(client, board_bytes(steps, "running loop"), split=split) == [ExecStarted()]
    assert client.interrupt() == section(steps, "Ctrl-C", "host")
    evs = merged(events(client, section(steps, "Ctrl-C", "board"), split=split))
    assert evs[-1] == ExecFinished(interrupted=True)
    assert isinstance(evs[0], Stderr) and b"KeyboardInterrupt" in evs[0].data

    # Soft reset: OK, "soft reboot", the banner: back in the raw REPL with empty RAM.
    assert client.soft_reset() == host_bytes(steps, "soft reset")
    assert events(client, board_bytes(steps, "soft reset"), split=split) == [
        SoftResetStarted(),
        RawReplEntered(),
    ]
    assert b"soft reboot" in client.chatter

    assert client.leave_raw_repl() == host_bytes(steps, "leave raw REPL")
    assert events(client, board_bytes(steps, "leave raw REPL"), split=split) == [LeftRawRepl()]
    assert client.state is State.FRIENDLY


# -- docs/reference/repl.rst ------------------------------------------------------------


@pytest.mark.parametrize("split", [0, 1, 2, 7])
def test_repl_rst_raw_paste_example(split: int) -> None:
    client = RawReplClient()
    client.enter_raw_repl()
    got: list[Event] = []
    host = b""
    for who, data in REPL_RST_STEPS:
        if who == "host":
            if data == b"\x01":
                continue  # our enter also interrupts first: checked below
            if data.startswith(b"\x05"):
                host += client.exec(b"print(123)")
            else:
                host += send_all(client, b"")
        else:
            got += events(client, data, split=split)
    assert REPL_RST_HOST == b"\x01" + host
    assert b"".join(d for who, d in REPL_RST_STEPS if who == "board") == REPL_RST_BOARD
    assert merged(got) == [
        RawReplEntered(),
        RawPasteAccepted(128),
        ExecStarted(),
        Stdout(b"123\r\n"),
        ExecFinished(),
    ]
    assert client.state is State.READY


def test_repl_rst_whole_answer_at_once_after_enter() -> None:
    # The whole answer in one read, the way a slow host would see it.
    client = RawReplClient()
    client.enter_raw_repl()
    banner_end = REPL_RST_BOARD.index(b">") + 1
    assert events(client, REPL_RST_BOARD[:banner_end]) == [RawReplEntered()]
    client.exec(b"print(123)")
    evs = events(client, REPL_RST_BOARD[banner_end:])
    assert merged(evs) == [
        RawPasteAccepted(128),
        ExecStarted(),
        Stdout(b"123\r\n"),
        ExecFinished(),
    ]


# -- raw-paste flow control -------------------------------------------------------------


def test_raw_paste_respects_the_window() -> None:
    client = ready_client()
    code = bytes(range(32, 127)) * 30  # 2850 bytes
    client.exec(code)
    assert events(client, b"R\x01\x20\x00") == [RawPasteAccepted(32)]
    sent = client.data_to_send()
    assert len(sent) == 32  # one window: the device has not granted more yet
    assert client.data_to_send() == b""
    total = sent
    while not total.endswith(b"\x04"):
        assert events(client, b"\x01") == []
        chunk = client.data_to_send()
        assert 0 < len(chunk) <= 33
        total += chunk
    assert total == code + b"\x04"
    assert client.state is State.PASTE_ENDING
    assert merged(events(client, b"\x01\x04ok\x04\x04>")) == [
        ExecStarted(),
        Stdout(b"ok"),
        ExecFinished(),
    ]


def test_raw_paste_device_abort_is_acknowledged_once() -> None:
    client = ready_client()
    client.exec(b"x" * 1000)
    events(client, b"R\x01\x80\x00\x01")
    assert len(client.data_to_send()) == 256
    # The device stops reading (e.g. a syntax error) and says so with Ctrl-D.
    assert events(client, b"\x04") == [ExecStarted()]
    assert client.data_to_send() == b"\x04"
    assert client.data_to_send() == b""
    evs = merged(events(client, b"\x04Traceback...\r\nSyntaxError: invalid syntax\r\n\x04>"))
    assert evs == [
        Stderr(b"Traceback...\r\nSyntaxError: invalid syntax\r\n"),
        ExecFinished(),
    ]


def test_raw_paste_refused_with_r00_falls_back_to_plain_raw() -> None:
    client = ready_client()
    client.exec(b"print(1)")
    assert events(client, b"R\x00") == [RawPasteRefused()]
    assert send_all(client, b"") == b"print(1)\x04"
    assert merged(events(client, b"OK1\r\n\x04\x04>")) == [
        ExecStarted(),
        Stdout(b"1\r\n"),
        ExecFinished(),
    ]


def test_raw_paste_zero_window_is_a_protocol_error() -> None:
    client = ready_client()
    client.exec(b"1")
    with pytest.raises(ProtocolError, match="window"):
        events(client, b"R\x01\x00\x00")


# -- plain raw mode ---------------------------------------------------------------------


def test_plain_raw_goes_out_in_paced_chunks() -> None:
    client = ready_client(raw_chunk=256)
    code = b"a" * 1000
    chunks = [client.exec(code, raw_paste=False)]
    while client.raw_chunks_pending:
        chunks.append(client.data_to_send())
    assert [len(c) for c in chunks] == [256, 256, 256, 233]
    assert b"".join(chunks) == code + b"\x04"
    assert client.data_to_send() == b""


def test_stdout_is_streamed_as_it_arrives() -> None:
    client = ready_client()
    send_all(client, client.exec(b"for i in range(3): print(i)", raw_paste=False))
    assert events(client, b"OK0\r\n") == [ExecStarted(), Stdout(b"0\r\n")]
    assert events(client, b"1\r\n") == [Stdout(b"1\r\n")]
    assert events(client, b"2\r\n\x04") == [Stdout(b"2\r\n")]
    assert events(client, b"\x04>") == [ExecFinished()]


def test_binary_output_passes_untouched() -> None:
    client = ready_client()
    send_all(client, client.exec(b"x", raw_paste=False))
    payload = bytes(b for b in range(256) if b != 4)
    evs = merged(events(client, b"OK" + payload + b"\x04\x04>"))
    assert evs == [ExecStarted(), Stdout(payload), ExecFinished()]


# -- entering, syncing, resets ----------------------------------------------------------


@pytest.mark.parametrize("split", [1, 2, 13])
def test_banner_found_after_program_output(split: int) -> None:
    client = RawReplClient()
    client.enter_raw_repl()
    noise = b"".join(b"tick %d\r\n" % i for i in range(300)) + b"raw REPL; CTRL-B"
    reply = b"\x04Traceback...\r\nKeyboardInterrupt: \r\n\x04>" + b"\r\n>>> " + b"\r\n" + BANNER
    assert events(client, noise + reply, split=split) == [RawReplEntered()]
    assert len(client.chatter) <= 200
    assert client.state is State.READY


def test_output_while_idle_is_stray_not_an_error() -> None:
    client = ready_client()
    assert events(client, BANNER) == [Stray(BANNER)]
    assert client.state is State.READY


def test_sync_skips_repeated_banners() -> None:
    client = ready_client()
    sent = client.sync()
    assert sent.endswith(b"\x04") and b"mpsync" in sent
    n = client._sync_count
    reply = BANNER + BANNER + b"OKmpsync:%d\x04\x04>" % n
    assert events(client, reply, split=1) == [Synced()]
    assert client.state is State.READY
    # an echo of the code (a device that only echoes) does not count as its output
    echo = client.sync()
    assert events(client, echo) == []
    assert client.state is State.SYNCING


def test_soft_reset_into_friendly_repl_asks_for_raw_again() -> None:
    client = ready_client()
    client.soft_reset()
    assert events(client, b"OK\r\nMPY: soft reboot\r\nMicroPython v1.22\r\n>>> ") == [
        SoftResetStarted()
    ]
    assert client.data_to_send() == b"\x01"
    assert client.state is State.ENTERING
    assert events(client, b"\r\n" + BANNER) == [RawReplEntered()]


def test_interrupt_before_running_resynchronises() -> None:
    client = ready_client()
    client.exec(b"x" * 10, raw_paste=False)
    # no "OK" yet: a Ctrl-C alone would leave the board waiting; a full enter instead
    assert client.interrupt() == b"\r\x03\x03\x01"
    assert client.state is State.ENTERING


def test_transition_table_allows_enter_everywhere() -> None:
    assert set(TRANSITIONS) == set(State)
    for moves in TRANSITIONS.values():
        assert moves[next(t for t in moves if t.value == "enter")] is State.ENTERING


# -- errors -----------------------------------------------------------------------------


def test_garbage_instead_of_ok_is_a_protocol_error_and_resync_recovers() -> None:
    client = ready_client()
    send_all(client, client.exec(b"1", raw_paste=False))
    with pytest.raises(ProtocolError, match=r"expected 'OK'.*b'XY'"):
        events(client, b"XY")
    assert client.state is State.ERROR
    with pytest.raises(ProtocolError, match="out of step"):
        client.receive_data(b"more")
    client.enter_raw_repl()
    assert events(client, BANNER) == [RawReplEntered()]


def test_missing_prompt_is_a_protocol_error() -> None:
    client = ready_client()
    send_all(client, client.exec(b"1", raw_paste=False))
    with pytest.raises(ProtocolError, match="prompt"):
        events(client, b"OK\x04\x04?")


def test_echoing_device_is_a_protocol_error_on_raw_paste() -> None:
    client = ready_client()
    request = client.exec(b"1")
    with pytest.raises(ProtocolError, match="raw-paste answer"):
        events(client, request)  # the device echoes what it got


def test_commands_in_the_wrong_state_are_refused() -> None:
    client = RawReplClient()
    with pytest.raises(ProtocolError, match="cannot exec-paste while the raw REPL is unknown"):
        client.exec(b"1")
    client.enter_raw_repl()
    with pytest.raises(ProtocolError, match="cannot soft-reset"):
        client.soft_reset()


@pytest.mark.parametrize("byte", [b"\x01", b"\x02", b"\x03", b"\x04"])
def test_code_with_control_bytes_is_refused(byte: bytes) -> None:
    client = ready_client()
    with pytest.raises(ValueError, match="control byte"):
        client.exec(b"print('" + byte + b"')")
    assert client.state is State.READY
