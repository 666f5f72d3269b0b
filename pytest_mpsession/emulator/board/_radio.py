# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `radio` of the BBC micro:bit (legacy profile): sent messages are recorded, received
# ones come from _mpmock.set_input('radio', [b'...', ...]).
import _mpmock
from _mpmock import record

RATE_250KBIT = 2
RATE_1MBIT = 0
RATE_2MBIT = 1
_on = [False]


def reset():
    pass


def config(**kw):
    record("radio", None, "config", kw)


def on():
    _on[0] = True


def off():
    _on[0] = False


def _check():
    if not _on[0]:
        raise ValueError("radio is not enabled")


def send_bytes(message):
    _check()
    record("radio", None, "send", bytes(message))


def send(message):
    send_bytes(message.encode() if hasattr(message, "encode") else bytes(message, "utf8"))


def receive_bytes():
    _check()
    q = _mpmock.inputs.get("radio")
    if not q:
        return None
    return bytes(q.pop(0))


def receive():
    m = receive_bytes()
    return None if m is None else str(m, "utf8")


def receive_bytes_into(buf):
    m = receive_bytes()
    if m is None:
        return None
    buf[: len(m)] = m
    return len(m)


def receive_full():
    m = receive_bytes()
    return None if m is None else (m, -50, 0)
