# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `music` of the BBC micro:bit (legacy profile): what is played is recorded in _mpmock.
from _mpmock import record

_tempo = [4, 120]


def reset():
    _tempo[0] = 4
    _tempo[1] = 120


def set_tempo(ticks=4, bpm=120):
    _tempo[0] = ticks
    _tempo[1] = bpm


def get_tempo():
    return (_tempo[0], _tempo[1])


def play(music, pin=None, wait=True, loop=False):
    record("music", None, "play", music)


def pitch(frequency, duration=-1, pin=None, wait=True):
    record("music", None, "pitch", (frequency, duration))


def stop(pin=None):
    record("music", None, "stop")


DADADADUM = ('DADADADUM',)
ENTERTAINER = ('ENTERTAINER',)
PRELUDE = ('PRELUDE',)
ODE = ('ODE',)
NYAN = ('NYAN',)
RINGTONE = ('RINGTONE',)
FUNK = ('FUNK',)
BLUES = ('BLUES',)
BIRTHDAY = ('BIRTHDAY',)
WEDDING = ('WEDDING',)
FUNERAL = ('FUNERAL',)
PUNCHLINE = ('PUNCHLINE',)
PYTHON = ('PYTHON',)
BADDY = ('BADDY',)
CHASE = ('CHASE',)
BA_DING = ('BA_DING',)
WAWAWAWAA = ('WAWAWAWAA',)
JUMP_UP = ('JUMP_UP',)
JUMP_DOWN = ('JUMP_DOWN',)
POWER_UP = ('POWER_UP',)
POWER_DOWN = ('POWER_DOWN',)
