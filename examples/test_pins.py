"""machine.Pin on the emulator: test a button-to-LED driver without hardware.

The emulator's fake peripherals record what the firmware does to them and take their inputs
from the host (through the ``_mpmock`` registry on the board), so a test can press the button
and check the LED. On a real board these tests are skipped (the project feature ``emulator``
is defined in conftest.py).
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.requires_feature("machine", "emulator")

DRIVER = """
from machine import Pin

class Lamp:
    # A push button on pin 14 (pulled up, pressed = 0) toggles the LED on pin 2.
    def __init__(self):
        self.led = Pin(2, Pin.OUT, value=0)
        self.button = Pin(14, Pin.IN, Pin.PULL_UP)
        self.button.irq(self._pressed, trigger=Pin.IRQ_FALLING)
        self.presses = 0

    def _pressed(self, pin):
        self.presses += 1
        self.led.value(not self.led.value())
"""


@pytest.fixture
def lamp(device_session):
    device_session.exec(DRIVER + "\nlamp = Lamp()\nimport _mpmock\n_mpmock.take()")
    return device_session


def press(session):
    """Press and release the button, as a finger would."""
    session.exec("_mpmock.set_pin(14, 0)\n_mpmock.set_pin(14, 1)")


def test_led_starts_off(lamp):
    assert lamp.eval("lamp.led.value()") == 0


def test_each_press_toggles_the_led(lamp):
    press(lamp)
    assert lamp.eval("lamp.led.value(), lamp.presses") == (1, 1)
    press(lamp)
    assert lamp.eval("lamp.led.value(), lamp.presses") == (0, 2)


def test_the_driver_only_writes_the_led(lamp):
    press(lamp)
    # (kind, pin, what, value) records of everything done to the pins since the fixture.
    writes = lamp.eval("[r for r in _mpmock.take('Pin') if r[2] == 'value']")
    assert writes == [("Pin", 2, "value", 1)]


def test_releasing_alone_does_nothing(lamp):
    lamp.exec("_mpmock.set_pin(14, 1)")  # already up: no falling edge
    assert lamp.eval("lamp.presses") == 0
