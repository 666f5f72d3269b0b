# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `neopixel` of the BBC micro:bit (legacy profile): show() records the pixels.
from _mpmock import record


class NeoPixel:
    def __init__(self, pin, n):
        self._pin = pin
        self._px = [(0, 0, 0)] * n

    def __len__(self):
        return len(self._px)

    def __getitem__(self, i):
        return self._px[i]

    def __setitem__(self, i, v):
        self._px[i] = tuple(v)

    def clear(self):
        self._px = [(0, 0, 0)] * len(self._px)
        record("neopixel", None, "clear")

    def show(self):
        record("neopixel", None, "show", list(self._px))
