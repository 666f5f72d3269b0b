# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `this` of the BBC micro:bit (legacy profile): the board's text, printed on the first import.


def _init():
 print('The Zen of MicroPython, by Nicholas H. Tollervey\n\nCode,\nHack it,\nLess is more,\nKeep it simple,\nSmall is beautiful,\n\nBe brave! Break things! Learn and have fun!\nExpress yourself with MicroPython.\n\nHappy hacking! :-)')


def authors():
 print('MicroPython on the micro:bit is brought to you by:')
