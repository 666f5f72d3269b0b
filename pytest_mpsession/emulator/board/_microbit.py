# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `microbit` (BBC micro:bit, legacy profile): display, buttons, pins, accelerometer,
# temperature, sleep/running_time/reset/panic.  Inputs come from _mpmock (set_input:
# 'button_a', 'button_b', 'accel', 'temperature', 'light'; set_pin/set_adc for pins),
# what is done is recorded in _mpmock.log.
import time

import _mpmock
from _mpmock import record

_start = time.ticks_ms()


def sleep(ms):
    time.sleep_ms(int(ms))


def running_time():
    return time.ticks_diff(time.ticks_ms(), _start)


def temperature():
    return _mpmock.inputs.get("temperature", 21)


def reset():
    _mpmock._signal(b"H")


def panic(n=0):
    record("microbit", None, "panic", n)
    _mpmock._signal(b"H")


class Image:
    def __init__(self, *args):
        if args and isinstance(args[0], str):
            rows = args[0].rstrip(":").split(":")
            self._w = max(len(r) for r in rows)
            self._h = len(rows)
            self._px = [[int(c) for c in r] + [0] * (self._w - len(r)) for r in rows]
        else:
            self._w = args[0] if args else 5
            self._h = args[1] if len(args) > 1 else 5
            self._px = [[0] * self._w for _ in range(self._h)]

    def width(self):
        return self._w

    def height(self):
        return self._h

    def get_pixel(self, x, y):
        return self._px[y][x]

    def set_pixel(self, x, y, v):
        self._px[y][x] = v


Image.HEART = Image("09090:99999:99999:09990:00900")
Image.HAPPY = Image("00000:09090:00000:90009:09990")
Image.SAD = Image("00000:09090:00000:09990:90009")
Image.YES = Image("00000:00009:00090:90900:09000")
Image.NO = Image("90009:09090:00900:09090:90009")


class _Display:
    def __init__(self):
        self._px = [[0] * 5 for _ in range(5)]
        self._on = True

    def show(self, x, delay=400, wait=True, loop=False, clear=False):
        record("display", None, "show", x if isinstance(x, (str, int, float)) else "Image")

    def scroll(self, text, delay=150, wait=True, loop=False, monospace=False):
        record("display", None, "scroll", str(text))

    def clear(self):
        self._px = [[0] * 5 for _ in range(5)]
        record("display", None, "clear")

    def set_pixel(self, x, y, v):
        self._px[y][x] = v

    def get_pixel(self, x, y):
        return self._px[y][x]

    def on(self):
        self._on = True

    def off(self):
        self._on = False

    def is_on(self):
        return self._on

    def read_light_level(self):
        return _mpmock.inputs.get("light", 0)


display = _Display()


class _Button:
    def __init__(self, name):
        self._name = name
        self._presses = 0

    def is_pressed(self):
        return bool(_mpmock.inputs.get(self._name, False))

    def was_pressed(self):
        n = _mpmock.inputs.pop(self._name + "_presses", 0)
        self._presses += n
        return n > 0

    def get_presses(self):
        n = self._presses + _mpmock.inputs.pop(self._name + "_presses", 0)
        self._presses = 0
        return n


button_a = _Button("button_a")
button_b = _Button("button_b")


class MicroBitPin:
    def __init__(self, n):
        self._n = n

    def read_digital(self):
        return _mpmock.pins.get(self._n, 0)

    def write_digital(self, v):
        _mpmock.pins[self._n] = 1 if v else 0
        record("Pin", self._n, "value", 1 if v else 0)

    def read_analog(self):
        return _mpmock.adc.get(self._n, 0) >> 6

    def write_analog(self, v):
        record("Pin", self._n, "analog", v)

    def set_analog_period(self, ms):
        record("Pin", self._n, "period", ms)

    def is_touched(self):
        return bool(_mpmock.inputs.get(("touch", self._n), False))


pin0 = MicroBitPin(0)
pin1 = MicroBitPin(1)
pin2 = MicroBitPin(2)
pin3 = MicroBitPin(3)
pin4 = MicroBitPin(4)
pin5 = MicroBitPin(5)
pin6 = MicroBitPin(6)
pin7 = MicroBitPin(7)
pin8 = MicroBitPin(8)
pin9 = MicroBitPin(9)
pin10 = MicroBitPin(10)
pin11 = MicroBitPin(11)
pin12 = MicroBitPin(12)
pin13 = MicroBitPin(13)
pin14 = MicroBitPin(14)
pin15 = MicroBitPin(15)
pin16 = MicroBitPin(16)
pin19 = MicroBitPin(19)
pin20 = MicroBitPin(20)


class _Accelerometer:
    def get_values(self):
        return tuple(_mpmock.inputs.get("accel", (0, 0, -1024)))

    def get_x(self):
        return self.get_values()[0]

    def get_y(self):
        return self.get_values()[1]

    def get_z(self):
        return self.get_values()[2]

    def current_gesture(self):
        return _mpmock.inputs.get("gesture", "face up")


accelerometer = _Accelerometer()
