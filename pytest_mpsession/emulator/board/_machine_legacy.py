# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `machine` of a 1.9-era board (micro:bit): unique_id, reset, freq and little else.
import _mpmock


def unique_id():
    return _mpmock.cfg["uid"]


def reset():
    _mpmock._signal(b"H")


def freq():
    return _mpmock.cfg["freq"]


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def time_pulse_us(pin, level, timeout_us=1000000):
    return -2


class _Mem:
    # mem8/mem16/mem32[address]: the board's memory, as words of 8/16/32 bits; here what was
    # written (recorded in _mpmock) reads back, anything else reads 0
    def __init__(self, bits):
        self._bits = bits
        self._mask = (1 << bits) - 1
        self._words = {}

    def __repr__(self):
        return "<%d-bit memory>" % self._bits

    def __getitem__(self, addr):
        return self._words.get(addr, 0)

    def __setitem__(self, addr, value):
        value &= self._mask
        self._words[addr] = value
        _mpmock.record("mem%d" % self._bits, addr, "write", value)


mem8 = _Mem(8)
mem16 = _Mem(16)
mem32 = _Mem(32)
