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
