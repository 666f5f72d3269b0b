# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `audio` of the BBC micro:bit (legacy profile): what is played is recorded.
from _mpmock import record

_playing = [False]


class AudioFrame:
    def __init__(self):
        self._b = bytearray(32)

    def __len__(self):
        return 32

    def __getitem__(self, i):
        return self._b[i]

    def __setitem__(self, i, v):
        self._b[i] = v


def play(source, wait=True, pin=None, return_pin=None):
    record("audio", None, "play")


def is_playing():
    return _playing[0]


def stop():
    _playing[0] = False
