"""Strings and bytes: text handling that firmware relies on for protocols and displays."""

from __future__ import annotations

import pytest


def test_string_methods(device_session):
    assert device_session.eval("'a,b,,c'.split(',')") == ["a", "b", "", "c"]
    assert device_session.eval("'-'.join(['2024', '06', '01'])") == "2024-06-01"
    assert device_session.eval("'  ok\\r\\n'.strip()") == "ok"
    assert device_session.eval("'Temp: 21C'.replace('C', ' C').upper()") == "TEMP: 21 C"
    assert device_session.eval("'abcabc'.count('b'), 'abc'.find('z')") == (2, -1)


@pytest.mark.requires_feature("full_str")
def test_utf8_round_trip(device_session):
    # Strings are Unicode on the board too: length counts characters, not bytes.
    assert device_session.eval("'héllo'.encode()") == "héllo".encode()
    assert device_session.eval("b'h\\xc3\\xa9llo'.decode()") == "héllo"
    assert device_session.eval("len('héllo'), 'héllo'[1]") == (5, "é")


@pytest.mark.requires_feature("full_str")
def test_parsing_a_command_line(device_session):
    # The board's code, defined once per session, then called with different inputs.
    device_session.exec(
        """
def parse(line):
    name, _, args = line.strip().partition(" ")
    return name.lower(), [int(a) for a in args.split()] if args else []
"""
    )
    assert device_session.eval("parse('LED 1 255\\n')") == ("led", [1, 255])
    assert device_session.eval("parse('reset')") == ("reset", [])


def test_host_functions_run_on_the_board(device_session):
    # session.call() sends this function's source to the board once, then calls it there.
    def checksum(data):
        total = 0
        for byte in data:
            total = (total + byte) & 0xFF
        return (~total + 1) & 0xFF

    assert device_session.call(checksum, b"\x01\x02\x03") == 0xFA
    assert device_session.call(checksum, b"") == 0


def test_bytearray_is_mutable_in_place(device_session):
    device_session.exec("buf = bytearray(b'abc')\nbuf[0] = 0x41\nbuf.extend(b'!')")
    assert device_session.eval("bytes(buf)") == b"Abc!"


@pytest.mark.requires_firmware(">=1.20")  # f-strings arrived in MicroPython 1.20
def test_f_strings(device_session):
    assert device_session.exec("x = 5\nprint(f'{x:03d} {x * 2}')") == "005 10\n"


def test_repr_differs_from_cpython(device_session):
    # Worth knowing when you compare printed output: MicroPython keeps the trailing comma.
    out = device_session.exec("print(repr(KeyError('k')))")
    assert out.rstrip("\r\n") == "KeyError('k',)"
