"""Exceptions: what the board raises arrives in the test as a DeviceError, carrying the
board's exception type, message and traceback."""

from __future__ import annotations

import pytest

from pytest_mpsession import DeviceError


def test_board_exception_becomes_device_error(device_session):
    with pytest.raises(DeviceError) as excinfo:
        device_session.exec("1 // 0")
    assert excinfo.value.exc_type == "ZeroDivisionError"
    assert "ZeroDivisionError" in excinfo.value.traceback


def test_key_error_carries_the_key(device_session):
    with pytest.raises(DeviceError, match="KeyError") as excinfo:
        device_session.exec("config = {'rate': 9600}\nconfig['baud']")
    assert "baud" in str(excinfo.value)


def test_try_except_finally_order(device_session):
    out = device_session.exec(
        """
def step(fail):
    try:
        print("try")
        if fail:
            raise ValueError("bad reading")
        print("ok")
    except ValueError as e:
        print("except", e)
    finally:
        print("finally")

step(False)
step(True)
"""
    )
    # (old boards, a micro:bit, end lines with "\r\n")
    assert out.replace("\r\n", "\n").split("\n") == [
        *("try", "ok", "finally", "try", "except bad reading", "finally", "")
    ]


def test_custom_exception_hierarchy(device_session):
    device_session.exec(
        """
class SensorError(Exception):
    pass

class SensorTimeout(SensorError):
    pass

def read_sensor():
    raise SensorTimeout("no answer from 0x48")
"""
    )
    out = device_session.exec(
        "try:\n    read_sensor()\nexcept SensorError as e:\n    print('caught', e)"
    )
    assert out.rstrip("\r\n") == "caught no answer from 0x48"
    with pytest.raises(DeviceError) as excinfo:
        device_session.exec("read_sensor()")
    assert excinfo.value.exc_type == "SensorTimeout"


def test_errors_in_host_functions_point_at_the_host_source(device_session):
    def scale(reading, full_scale):
        return reading * 100 // full_scale

    assert device_session.call(scale, 512, 1024) == 50
    with pytest.raises(DeviceError) as excinfo:
        device_session.call(scale, 512, 0)
    # The board's traceback names this file and the line of `return reading * ...`.
    assert __file__.rsplit("/", 1)[-1] in excinfo.value.traceback
    assert "return reading * 100 // full_scale" in excinfo.value.traceback


def test_the_namespace_survives_an_exception(device_session):
    device_session.exec("counter = 1")
    with pytest.raises(DeviceError):
        device_session.exec("counter += 1\nraise RuntimeError('after the increment')")
    assert device_session.eval("counter") == 2
