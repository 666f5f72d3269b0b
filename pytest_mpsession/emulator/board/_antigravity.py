# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `antigravity` of the BBC micro:bit (legacy profile): the board's picture, printed on the first import.


def _init():
 print("+-xkcd.com/353---------------------------------------------------+\n|                                                                |\n|                                                    \\0/         |\n|                                                  /   \\         |\n|        You're flying!                  MicroPython!  /|        |\n|            How?                                      \\ \\       |\n|            /                                                   |\n|          0                                                     |\n|         /|\\                                                    |\n|          |                                                     |\n|-----____/_\\______________________________----------------------|\n|                                                                |\n+----------------------------------------------------------------+")
