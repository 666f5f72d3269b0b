# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `love` of the BBC micro:bit (legacy profile).
from _mpmock import record


def badaboom():
    record("love", None, "badaboom")
