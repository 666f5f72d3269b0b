"""``Communicator.run_ahead``: code sent before its reply is wanted, on the real MicroPython
unix port behind a PTY. The claiming ``run()`` gets the same reply a plain call would, any
other call stops the code first, and nothing sent ahead outlives the communicator."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import serial

from pytest_mpsession.communicator import STREAM_MIN, Communicator
from pytest_mpsession.errors import DeviceTimeout

pytestmark = pytest.mark.timeout(60)

# runs about 0.3 s on the board, then prints: long enough to be running when the host
# comes back, short enough to run again
SPIN = (
    "import time\nt=time.ticks_ms()\nwhile time.ticks_diff(time.ticks_ms(),t)<300:\n pass\n"
    "print('spun')\n"
)


@pytest.fixture
def comm(unix_port: str) -> Iterator[Communicator]:
    with Communicator.open(unix_port, timeout=10) as c:
        yield c


def test_the_claiming_run_reads_the_reply(comm: Communicator) -> None:
    before = comm.exchanges
    assert comm.run_ahead("x = 6 * 7\nprint('ahead', x)") is True
    reply = comm.run("x = 6 * 7\nprint('ahead', x)")
    assert (reply.output, reply.status, reply.traceback) == (b"ahead 42\n", ".", b"")
    assert comm.exchanges == before + 1  # sent once, not again
    assert comm.eval("x") == 42  # it ran in __main__, as run() would


def test_a_streamed_code_goes_ahead_too(comm: Communicator) -> None:
    code = "".join(f"v{i} = {i}\n" for i in range(STREAM_MIN // 6)) + "print(v3 + v7)\n"
    assert len(code) >= STREAM_MIN and comm._streams(code, 0)
    assert comm.run_ahead(code) is True
    assert comm.exec_raw(code) == (b"10\n", b"")


def test_the_board_exception_comes_with_the_claim(comm: Communicator) -> None:
    code = "print('before')\n1/0"
    assert comm.run_ahead(code)
    out, err = comm.exec_raw(code)
    assert out == b"before\n"
    assert b"ZeroDivisionError" in err


def test_another_call_stops_the_code_and_a_later_run_sends_it_again(comm: Communicator) -> None:
    assert comm.run_ahead(SPIN)
    # a different call: the spinning code is stopped first, and its output is not this one's
    assert comm.exec("print('other')") == "other\n"
    before = comm.exchanges
    assert comm.exec(SPIN) == "spun\n"  # not claimed: sent and run again, whole
    assert comm.exchanges == before + 1


@pytest.mark.parametrize("other", ["key", "soft_reset", "interrupt"])
def test_a_run_elsewhere_or_a_reset_forgets_it(comm: Communicator, other: str) -> None:
    assert comm.run_ahead("print('main')")
    if other == "key":
        # the same code in a namespace of its own is another call
        assert comm.run("print('main')", key=5).output == b"main\n"
    elif other == "soft_reset":
        comm.soft_reset()
    else:
        comm.interrupt()
    before = comm.exchanges
    assert comm.run("print('main')").output == b"main\n"
    assert comm.exchanges > before  # sent again: the one ahead was not taken


def test_the_timeout_runs_from_the_send(comm: Communicator) -> None:
    assert comm.run_ahead("while True:\n pass", timeout=0.5)
    with pytest.raises(DeviceTimeout):
        comm.exec_raw("while True:\n pass", timeout=0.5)
    assert comm.exec("print('usable')") == "usable\n"


def test_close_stops_code_nobody_claimed(unix_port: str) -> None:
    comm = Communicator.open(unix_port)
    assert comm.run_ahead("while True:\n pass")
    comm.close()
    # a board still running the loop would not answer Ctrl-A; one at its raw-REPL prompt
    # says its banner at once
    with serial.serial_for_url(unix_port, timeout=5) as port:
        port.write(b"\x01")
        assert b"raw REPL" in port.read_until(b"raw REPL")


def test_nothing_is_sent_ahead_on_a_closed_communicator(unix_port: str) -> None:
    comm = Communicator.open(unix_port)
    comm.close()
    assert comm.run_ahead("print(1)") is False


def test_code_for_pieces_is_not_sent_ahead(comm: Communicator) -> None:
    comm.piece_size = 256
    code = "".join(f"a{i} = {i}\n" for i in range(60))
    before = comm.exchanges
    assert comm.run_ahead(code) is False
    assert comm.exchanges == before
    with pytest.raises(TypeError, match="code must be a str"):
        comm.run_ahead(b"print(1)")  # type: ignore[arg-type]


@pytest.mark.parametrize("streamed", [False, True])
def test_the_time_the_host_is_away_is_not_the_boards(comm: Communicator, streamed: bool) -> None:
    """The host claims the reply later than the code's timeout (a slow plugin between two
    board tests): the code, done long before, is not timed out, nor its stream taken for
    lost (its reply and acknowledgement wait unread, not delivered at the claim's start)."""
    code = "import time\ntime.sleep(0.2)\nprint('late')\n"
    if streamed:
        code = "#" + "p" * STREAM_MIN + "\n" + code
        assert comm._streams(code, 0)
    assert comm.run_ahead(code, timeout=0.5)
    time.sleep(1.0)  # the host away (not a synchronisation: the reply is read below)
    before = comm.exchanges
    assert comm.exec_raw(code, timeout=0.5) == (b"late\n", b"")
    assert comm.exchanges == before  # claimed, not sent again


@pytest.mark.parametrize("ahead", [False, True])
def test_close_stops_code_a_ctrl_c_took_the_host_away_from(unix_port: str, ahead: bool) -> None:
    """Ctrl-C (or pytest-timeout) while a call waits on code that never ends, the call's own
    or one sent ahead and claimed: nobody will read its reply, and close() stops it."""
    spin = "print('go')\nwhile True:\n pass\n"
    comm = Communicator.open(unix_port)
    if ahead:
        assert comm.run_ahead(spin)

    def interrupt(_data: bytes) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        comm.run(spin, on_stdout=interrupt)
    comm.close()
    with serial.serial_for_url(unix_port, timeout=5) as port:
        port.write(b"\x01")  # answered at the raw-REPL prompt: the loop was stopped
        assert b"raw REPL" in port.read_until(b"raw REPL")


def test_close_leaves_code_sent_not_to_be_followed_running(unix_port: str) -> None:
    """Code sent to run on (exec_no_follow) is left running by close(), as asked."""
    with Communicator.open(unix_port) as comm:
        comm.exec_no_follow("while True:\n pass\n")
    with serial.serial_for_url(unix_port, timeout=0.5) as port:
        port.write(b"\x01")
        assert b"raw REPL" not in port.read_until(b"raw REPL")  # still looping
        port.write(b"\x03\x03")  # (stopped here: the fixture's board is shared)
    with Communicator.open(unix_port, timeout=10) as comm:
        assert comm.eval("1 + 1") == 2


def test_ctrl_c_as_code_is_sent_ahead_leaves_nothing_running(
    unix_port: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C just as the board starts code sent ahead, before run_ahead() returned: no call
    will claim it, and close() stops it."""
    comm = Communicator.open(unix_port)
    read_reply = Communicator._read_reply

    def interrupted(self: Communicator, *args: object, **kwargs: object) -> object:
        read_reply(self, *args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    monkeypatch.setattr(Communicator, "_read_reply", interrupted)
    with pytest.raises(KeyboardInterrupt):
        comm.run_ahead("while True:\n pass\n")
    monkeypatch.undo()
    comm.close()
    with serial.serial_for_url(unix_port, timeout=5) as port:
        port.write(b"\x01")
        assert b"raw REPL" in port.read_until(b"raw REPL")


def test_a_wrapper_removed_by_code_is_sent_again(comm: Communicator) -> None:
    """Code that deletes the checked-exchange wrapper from the board's ``__main__`` (its RAM
    intact): the next call finds it gone, provably ran nothing, and is sent again after the
    wrapper; every call after it works (not a reset error each)."""
    comm.exec("import __main__\ndel __main__._mpsx")
    before = comm.reset_count
    assert comm.eval("6 * 7") == 42
    assert comm.exec("print('after')") == "after\n"
    assert comm.reset_count == before  # its RAM was not lost
