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
    # (an image made from a string keeps only the string until its pixels are wanted: the
    # board's 65 built-in images cost little RAM until used)
    def __init__(self, *args):
        if args and isinstance(args[0], str):
            self._g = args[0]
        else:
            w = args[0] if args else 5
            h = args[1] if len(args) > 1 else 5
            self._g = [[0] * w for _ in range(h)]

    def _px(self):
        if type(self._g) is str:
            rows = self._g.rstrip(":").split(":")
            w = max(len(r) for r in rows)
            self._g = [[int(c) for c in r] + [0] * (w - len(r)) for r in rows]
        return self._g

    def width(self):
        return len(self._px()[0])

    def height(self):
        return len(self._px())

    def get_pixel(self, x, y):
        return self._px()[y][x]

    def set_pixel(self, x, y, v):
        self._px()[y][x] = v


# the board's built-in images (as the micro:bit's 1.9.2 firmware has them)
Image.ANGRY = Image("90009:09090:00000:99999:90909")
Image.ARROW_E = Image("00900:00090:99999:00090:00900")
Image.ARROW_N = Image("00900:09990:90909:00900:00900")
Image.ARROW_NE = Image("00999:00099:00909:09000:90000")
Image.ARROW_NW = Image("99900:99000:90900:00090:00009")
Image.ARROW_S = Image("00900:00900:90909:09990:00900")
Image.ARROW_SE = Image("90000:09000:00909:00099:00999")
Image.ARROW_SW = Image("00009:00090:90900:99000:99900")
Image.ARROW_W = Image("00900:09000:99999:09000:00900")
Image.ASLEEP = Image("00000:99099:00000:09990:00000")
Image.BUTTERFLY = Image("99099:99999:00900:99999:99099")
Image.CHESSBOARD = Image("09090:90909:09090:90909:09090")
Image.CLOCK1 = Image("00090:00090:00900:00000:00000")
Image.CLOCK10 = Image("00000:99000:00900:00000:00000")
Image.CLOCK11 = Image("09000:09000:00900:00000:00000")
Image.CLOCK12 = Image("00900:00900:00900:00000:00000")
Image.CLOCK2 = Image("00000:00099:00900:00000:00000")
Image.CLOCK3 = Image("00000:00000:00999:00000:00000")
Image.CLOCK4 = Image("00000:00000:00900:00099:00000")
Image.CLOCK5 = Image("00000:00000:00900:00090:00090")
Image.CLOCK6 = Image("00000:00000:00900:00900:00900")
Image.CLOCK7 = Image("00000:00000:00900:09000:09000")
Image.CLOCK8 = Image("00000:00000:00900:99000:00000")
Image.CLOCK9 = Image("00000:00000:99900:00000:00000")
Image.CONFUSED = Image("00000:09090:00000:09090:90909")
Image.COW = Image("90009:90009:99999:09990:00900")
Image.DIAMOND = Image("00900:09090:90009:09090:00900")
Image.DIAMOND_SMALL = Image("00000:00900:09090:00900:00000")
Image.DUCK = Image("09900:99900:09999:09990:00000")
Image.FABULOUS = Image("99999:99099:00000:09090:09990")
Image.GHOST = Image("99999:90909:99999:99999:90909")
Image.GIRAFFE = Image("99000:09000:09000:09990:09090")
Image.HAPPY = Image("00000:09090:00000:90009:09990")
Image.HEART = Image("09090:99999:99999:09990:00900")
Image.HEART_SMALL = Image("00000:09090:09990:00900:00000")
Image.HOUSE = Image("00900:09990:99999:09990:09090")
Image.MEH = Image("09090:00000:00090:00900:09000")
Image.MUSIC_CROTCHET = Image("00900:00900:00900:99900:99900")
Image.MUSIC_QUAVER = Image("00900:00990:00909:99900:99900")
Image.MUSIC_QUAVERS = Image("09999:09009:09009:99099:99099")
Image.NO = Image("90009:09090:00900:09090:90009")
Image.PACMAN = Image("09999:99090:99900:99990:09999")
Image.PITCHFORK = Image("90909:90909:99999:00900:00900")
Image.RABBIT = Image("90900:90900:99990:99090:99990")
Image.ROLLERSKATE = Image("00099:00099:99999:99999:09090")
Image.SAD = Image("00000:09090:00000:09990:90009")
Image.SILLY = Image("90009:00000:99999:00909:00999")
Image.SKULL = Image("09990:90909:99999:09990:09990")
Image.SMILE = Image("00000:00000:00000:90009:09990")
Image.SNAKE = Image("99000:99099:09090:09990:00000")
Image.SQUARE = Image("99999:90009:90009:90009:99999")
Image.SQUARE_SMALL = Image("00000:09990:09090:09990:00000")
Image.STICKFIGURE = Image("00900:99999:00900:09090:90009")
Image.SURPRISED = Image("09090:00000:00900:09090:00900")
Image.SWORD = Image("00900:00900:00900:09990:00900")
Image.TARGET = Image("00900:09990:99099:09990:00900")
Image.TORTOISE = Image("00000:09990:99999:09090:00000")
Image.TRIANGLE = Image("00000:00900:09090:99999:00000")
Image.TRIANGLE_LEFT = Image("90000:99000:90900:90090:99999")
Image.TSHIRT = Image("99099:99999:09990:09990:09990")
Image.UMBRELLA = Image("09990:99999:00900:90900:09900")
Image.XMAS = Image("00900:09990:00900:09990:99999")
Image.YES = Image("00000:00009:00090:90900:09000")
Image.ALL_CLOCKS = (
    Image.CLOCK12, Image.CLOCK1, Image.CLOCK2, Image.CLOCK3, Image.CLOCK4, Image.CLOCK5, Image.CLOCK6, Image.CLOCK7, Image.CLOCK8, Image.CLOCK9, Image.CLOCK10, Image.CLOCK11,
)
Image.ALL_ARROWS = (
    Image.ARROW_N, Image.ARROW_NE, Image.ARROW_E, Image.ARROW_SE, Image.ARROW_S, Image.ARROW_SW, Image.ARROW_W, Image.ARROW_NW,
)


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


class _MicroBitPin:
    NO_PULL = 0
    PULL_UP = 1
    PULL_DOWN = 2

    def __init__(self, n):
        self._n = n
        self._pull = 2 if n in (0, 1, 2, 8, 12, 13, 14, 15, 16) else 0
        self._mode = "unused"

    def set_pull(self, pull):
        self._pull = pull
        record("Pin", self._n, "pull", pull)

    def get_pull(self):
        return self._pull

    def get_mode(self):
        return self._mode

    def set_analog_period_microseconds(self, us):
        record("Pin", self._n, "period_us", us)

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


pin0 = _MicroBitPin(0)
pin1 = _MicroBitPin(1)
pin2 = _MicroBitPin(2)
pin3 = _MicroBitPin(3)
pin4 = _MicroBitPin(4)
pin5 = _MicroBitPin(5)
pin6 = _MicroBitPin(6)
pin7 = _MicroBitPin(7)
pin8 = _MicroBitPin(8)
pin9 = _MicroBitPin(9)
pin10 = _MicroBitPin(10)
pin11 = _MicroBitPin(11)
pin12 = _MicroBitPin(12)
pin13 = _MicroBitPin(13)
pin14 = _MicroBitPin(14)
pin15 = _MicroBitPin(15)
pin16 = _MicroBitPin(16)
pin19 = _MicroBitPin(19)
pin20 = _MicroBitPin(20)


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


class _Compass:
    def calibrate(self):
        record("compass", None, "calibrate")

    def is_calibrated(self):
        return True

    def clear_calibration(self):
        pass

    def get_x(self):
        return _mpmock.inputs.get("compass", (0, 0, 0))[0]

    def get_y(self):
        return _mpmock.inputs.get("compass", (0, 0, 0))[1]

    def get_z(self):
        return _mpmock.inputs.get("compass", (0, 0, 0))[2]

    def heading(self):
        return _mpmock.inputs.get("heading", 0)

    def get_field_strength(self):
        return _mpmock.inputs.get("field_strength", 0)


compass = _Compass()


class _I2C:
    # the micro:bit's one I2C bus: devices from _mpmock.add_i2c(addr, bus=0)
    def init(self, freq=100000, sda=None, scl=None):
        pass

    def scan(self):
        return sorted(_mpmock.i2c_bus.get(0, {}))

    def _dev(self, addr):
        d = _mpmock.i2c_bus.get(0, {}).get(addr)
        if d is None:
            raise OSError(5)
        return d

    def read(self, addr, n, repeat=False):
        return self._dev(addr).read(n)

    def write(self, addr, buf, repeat=False):
        self._dev(addr).write(buf)


i2c = _I2C()


class _SPI:
    def init(self, baudrate=1000000, bits=8, mode=0, sclk=None, mosi=None, miso=None):
        pass

    def write(self, buf):
        record("SPI", 0, "write", bytes(buf))

    def read(self, n, out=0):
        return bytes([out] * n)

    def write_readinto(self, out, into):
        record("SPI", 0, "write", bytes(out))
        for i in range(len(into)):
            into[i] = 0


spi = _SPI()


class _UART:
    ODD = 1
    EVEN = 0

    def init(self, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None):
        pass

    def any(self):
        return len(_mpmock.uart_rx.get(0, b""))

    def read(self, n=-1):
        data = _mpmock.uart_rx.get(0, b"")
        if not data:
            return None
        n = len(data) if n is None or n < 0 else n
        _mpmock.uart_rx[0] = data[n:]
        return data[:n]

    def readall(self):
        return self.read()

    def readline(self):
        data = _mpmock.uart_rx.get(0, b"")
        i = data.find(b"\n")
        return self.read(len(data) if i < 0 else i + 1)

    def readinto(self, buf, n=-1):
        data = self.read(len(buf) if n < 0 else n)
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def write(self, buf):
        record("UART", 0, "write", bytes(buf, "utf8") if type(buf) is str else bytes(buf))
        return len(buf)


uart = _UART()
