# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `speech` of the BBC micro:bit (legacy profile): what is said is recorded.
from _mpmock import record


def say(words, pitch=64, speed=72, mouth=128, throat=128, pin=None):
    record("speech", None, "say", words)


def sing(phonemes, pitch=64, speed=72, mouth=128, throat=128, pin=None):
    record("speech", None, "sing", phonemes)


def pronounce(phonemes, pitch=64, speed=72, mouth=128, throat=128, pin=None):
    record("speech", None, "pronounce", phonemes)


def translate(words):
    return words
