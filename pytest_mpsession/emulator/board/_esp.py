# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `esp` (esp32).
import _mpmock


def osdebug(*args):
    pass


def flash_size():
    return _mpmock.cfg["flash_size"]


def flash_user_start():
    return 0x200000
