# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `pyb` (stm32): LEDs, the USR switch (_mpmock.inputs['switch']), the machine classes.
import time

import _machine
import _mpmock
from _mpmock import record

Pin = _machine.Pin
ADC = _machine.ADC
I2C = _machine.I2C
SPI = _machine.SPI
UART = _machine.UART
RTC = _machine.RTC
Timer = _machine.Timer
unique_id = _machine.unique_id
freq = _machine.freq
hard_reset = _machine.reset
bootloader = _machine.bootloader


def delay(ms):
    time.sleep_ms(ms)


def udelay(us):
    time.sleep_us(us)


def millis():
    return time.ticks_ms()


def micros():
    return time.ticks_us()


def elapsed_millis(start):
    return time.ticks_diff(time.ticks_ms(), start)


def elapsed_micros(start):
    return time.ticks_diff(time.ticks_us(), start)


def sync():
    pass


def info(*args):
    print("emulated pyboard")


def wfi():
    pass


class LED:
    def __init__(self, n):
        self._n = n

    def on(self):
        _mpmock.pins[("LED", self._n)] = 1
        record("LED", self._n, "on")

    def off(self):
        _mpmock.pins[("LED", self._n)] = 0
        record("LED", self._n, "off")

    def toggle(self):
        if _mpmock.pins.get(("LED", self._n)):
            self.off()
        else:
            self.on()

    def intensity(self, *args):
        if args:
            record("LED", self._n, "intensity", args[0])
            return None
        return 255 if _mpmock.pins.get(("LED", self._n)) else 0


class Switch:
    def __init__(self):
        self._cb = None

    def value(self):
        return bool(_mpmock.inputs.get("switch"))

    def __call__(self):
        return self.value()

    def callback(self, fun):
        self._cb = fun
