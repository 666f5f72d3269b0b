"""Arithmetic and number formatting.

The kind of regression suite that catches a firmware built without float support, a
changed rounding rule, or a formatting bug, before the device that prints your sensor
readings does.
"""

from __future__ import annotations

import math

import pytest


def test_integer_division_rounds_towards_minus_infinity(device_session):
    # eval() brings the board's value back as a Python value.
    assert device_session.eval("7 // 2, -7 // 2, 7 % 3, -7 % 3") == (3, -4, 1, 2)
    assert device_session.eval("divmod(17, 5)") == (3, 2)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2 ** 10", 1024),
        ("0x7F & 0b1010", 10),
        ("1 << 8 | 3", 259),
        ("int('ff', 16)", 255),
        ("int('-42')", -42),
        ("int.from_bytes(b'\\x01\\x02', 'big')", 258),
    ],
)
def test_integer_expressions(device_session, expression, expected):
    assert device_session.eval(expression) == expected


@pytest.mark.requires_feature("bigint")
def test_integers_grow_past_the_machine_word(device_session):
    assert device_session.eval("2 ** 100") == 2**100
    assert device_session.eval("(1 << 64) - 1") == 18446744073709551615


@pytest.mark.requires_feature("float")
def test_float_math_agrees_with_the_host(device_session):
    # A board may build floats as single precision (the micro:bit does), and then prints
    # them with 6 significant digits: compare with a tolerance that allows for that.
    assert device_session.eval("__import__('math').sqrt(2)") == pytest.approx(
        math.sqrt(2), rel=1e-5
    )
    assert device_session.eval("1 / 3") == pytest.approx(1 / 3, rel=1e-5)


@pytest.mark.requires_feature("float")
def test_round_half_to_even(device_session):
    assert device_session.eval("round(2.5), round(3.5), round(-0.5)") == (2, 4, 0)


@pytest.mark.requires_feature("float")
@pytest.mark.parametrize(
    ("code", "printed"),
    [
        ("print('%.2f' % 3.14159)", "3.14"),
        ("print('%05d' % 42)", "00042"),
        ("print('{:x}'.format(255))", "ff"),
        ("print('{:.3e}'.format(12345.678))", "1.235e+04"),
        ("print('{:>8}|'.format('ab'))", "      ab|"),
    ],
)
def test_number_formatting(device_session, code, printed):
    # exec() returns exactly what the code printed: old boards (a micro:bit) end lines "\r\n".
    assert device_session.exec(code).replace("\r\n", "\n") == printed + "\n"


@pytest.mark.requires_feature("float")
def test_infinity_and_nan(device_session):
    assert device_session.eval("1e300 * 1e10") == math.inf
    assert math.isnan(device_session.eval("float('nan')"))


@pytest.mark.requires_feature("complex")
def test_complex_numbers(device_session):
    assert device_session.eval("((1 + 2j) * (3 - 1j)).real, ((1 + 2j) * (3 - 1j)).imag") == (5, 5)


@pytest.mark.requires_feature("struct")
def test_packing_a_sensor_frame(device_session):
    # A little-endian frame: int16 temperature in centi-degrees, uint8 humidity.
    frame = device_session.eval("__import__('struct').pack('<hB', -1250, 47)")
    assert frame == b"\x1e\xfb\x2f"
