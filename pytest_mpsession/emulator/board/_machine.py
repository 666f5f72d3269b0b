# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `machine` module of the emulated board (MicroPython). Everything done is recorded in
# _mpmock.log; inputs (pin levels, ADC readings, I2C devices, UART bytes) come from _mpmock.
import time

import _mpmock
from _mpmock import record

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
IDLE = 0
SLEEP = 1
DEEPSLEEP = 2
_freq = [0]


def unique_id():
    return _mpmock.cfg["uid"]


def freq(*args):
    if args:
        record("machine", None, "freq", args[0])
        _freq[0] = args[0]
        return None
    return _freq[0] or _mpmock.cfg["freq"]


def idle():
    record("machine", None, "idle")


def reset():
    record("machine", None, "reset")
    _mpmock._signal(b"H")


def soft_reset():
    _mpmock._signal(b"S")


def reset_cause():
    return _mpmock.cause


def lightsleep(ms=None):
    record("machine", None, "lightsleep", ms)
    if ms:
        time.sleep_ms(ms)


def deepsleep(ms=None):
    record("machine", None, "deepsleep", ms)
    _mpmock._signal(b"D")


def disable_irq():
    return 0


def enable_irq(state=0):
    pass


def bootloader(*args):
    record("machine", None, "bootloader")
    _mpmock._signal(b"H")


def time_pulse_us(pin, level, timeout_us=1000000):
    return -2


def _id(p):
    return p._id if isinstance(p, Pin) else p


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    ALT = 2
    ALT_OPEN_DRAIN = 6
    ANALOG = 0
    PULL_UP = 1
    PULL_DOWN = 2
    PULL_HOLD = 4
    IRQ_FALLING = 1
    IRQ_RISING = 2
    IRQ_LOW_LEVEL = 4
    IRQ_HIGH_LEVEL = 8
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2

    def __init__(self, id, mode=-1, pull=-1, *, value=None, drive=-1, alt=-1):
        self._id = _id(id)
        self._mode = None
        self._pull = None
        self.init(mode, pull, value=value)

    def init(self, mode=-1, pull=-1, *, value=None, drive=-1, alt=-1):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        record("Pin", self._id, "init", (self._mode, self._pull))
        if self._id not in _mpmock.pins and self._pull == Pin.PULL_UP:
            _mpmock.pins[self._id] = 1
        if value is not None:
            self.value(value)

    def value(self, *args):
        if args:
            v = 1 if args[0] else 0
            _mpmock.pins[self._id] = v
            record("Pin", self._id, "value", v)
            return None
        return _mpmock.pins.get(self._id, 0)

    def __call__(self, *args):
        return self.value(*args)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def high(self):
        self.value(1)

    def low(self):
        self.value(0)

    def toggle(self):
        self.value(1 - self.value())

    def mode(self, *args):
        if args:
            self.init(args[0])
            return None
        return self._mode

    def pull(self, *args):
        if args:
            self.init(-1, args[0])
            return None
        return self._pull

    def irq(self, handler=None, trigger=3, *, priority=1, wake=None, hard=False):
        if handler is None:
            _mpmock.pin_irq.pop(self._id, None)
        else:
            _mpmock.pin_irq[self._id] = (handler, trigger, self)
        record("Pin", self._id, "irq", trigger)

    def __repr__(self):
        return "Pin(%r)" % (self._id,)


class Signal:
    def __init__(self, pin, *args, invert=False, **kw):
        self._pin = pin if isinstance(pin, Pin) else Pin(pin, *args, **kw)
        self._inv = bool(invert)

    def value(self, *args):
        if args:
            self._pin.value((1 if args[0] else 0) ^ self._inv)
            return None
        return self._pin.value() ^ self._inv

    def __call__(self, *args):
        return self.value(*args)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class ADC:
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12
    CORE_TEMP = 4

    def __init__(self, pin, *, atten=None):
        self._id = _id(pin)
        record("ADC", self._id, "init", atten)

    def read_u16(self):
        return _mpmock.adc.get(self._id, 0) & 0xFFFF

    def read(self):
        return self.read_u16() >> 4

    def read_uv(self):
        return self.read_u16() * 3300000 // 65535

    def atten(self, a):
        record("ADC", self._id, "atten", a)

    def width(self, w):
        record("ADC", self._id, "width", w)


class PWM:
    def __init__(self, dest, *, freq=None, duty_u16=None, duty_ns=None, duty=None, invert=False):
        self._id = _id(dest)
        self._freq = 0
        self._duty = 0
        self.init(freq=freq, duty_u16=duty_u16, duty_ns=duty_ns, duty=duty)

    def init(self, *, freq=None, duty_u16=None, duty_ns=None, duty=None):
        if freq is not None:
            self.freq(freq)
        if duty_u16 is not None:
            self.duty_u16(duty_u16)
        if duty_ns is not None:
            self.duty_ns(duty_ns)
        if duty is not None:
            self.duty(duty)

    def freq(self, *args):
        if args:
            self._freq = args[0]
            record("PWM", self._id, "freq", args[0])
            return None
        return self._freq

    def duty_u16(self, *args):
        if args:
            self._duty = args[0]
            record("PWM", self._id, "duty_u16", args[0])
            return None
        return self._duty

    def duty(self, *args):
        if args:
            self.duty_u16(args[0] * 65535 // 1023)
            return None
        return self._duty * 1023 // 65535

    def duty_ns(self, *args):
        period = 1000000000 // self._freq if self._freq else 0
        if args:
            self.duty_u16(args[0] * 65535 // period if period else 0)
            return None
        return self._duty * period // 65535

    def deinit(self):
        record("PWM", self._id, "deinit")


def _bus(i2c):
    return _mpmock.i2c_bus.get(i2c._id, {})


class I2C:
    def __init__(self, id=0, *, scl=None, sda=None, freq=400000, timeout=50000):
        self._id = id
        record("I2C", id, "init", freq)

    def init(self, *args, **kw):
        record("I2C", self._id, "init", kw.get("freq"))

    def deinit(self):
        record("I2C", self._id, "deinit")

    def scan(self):
        return sorted(_bus(self))

    def _dev(self, addr):
        d = _bus(self).get(addr)
        if d is None:
            raise OSError(19)  # ENODEV: no ACK, as on a board
        return d

    def writeto(self, addr, buf, stop=True):
        self._dev(addr).write(buf)
        record("I2C", self._id, "writeto", (addr, bytes(buf)))
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        data = b"".join(bytes(b) for b in vector)
        return self.writeto(addr, data, stop)

    def readfrom(self, addr, nbytes, stop=True):
        data = self._dev(addr).read(nbytes)
        record("I2C", self._id, "readfrom", (addr, nbytes))
        return data

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self.readfrom(addr, len(buf), stop)

    def writeto_mem(self, addr, memaddr, buf, *, addrsize=8):
        d = self._dev(addr)
        d.ptr = memaddr
        for b in bytes(buf):
            d.mem[d.ptr % len(d.mem)] = b
            d.ptr += 1
        d.writes.append(bytes([memaddr & 0xFF]) + bytes(buf))
        record("I2C", self._id, "writeto_mem", (addr, memaddr, bytes(buf)))

    def readfrom_mem(self, addr, memaddr, nbytes, *, addrsize=8):
        d = self._dev(addr)
        d.ptr = memaddr
        record("I2C", self._id, "readfrom_mem", (addr, memaddr, nbytes))
        return d.read(nbytes)

    def readfrom_mem_into(self, addr, memaddr, buf, *, addrsize=8):
        buf[:] = self.readfrom_mem(addr, memaddr, len(buf), addrsize=addrsize)


class SoftI2C(I2C):
    def __init__(self, scl=None, sda=None, *, freq=400000, timeout=50000):
        I2C.__init__(self, "soft", freq=freq)


class SPI:
    MSB = 0
    LSB = 1
    CONTROLLER = 0

    def __init__(
        self,
        id=0,
        baudrate=1000000,
        *,
        polarity=0,
        phase=0,
        bits=8,
        firstbit=0,
        sck=None,
        mosi=None,
        miso=None,
    ):
        self._id = id
        record("SPI", id, "init", baudrate)

    def init(self, baudrate=1000000, **kw):
        record("SPI", self._id, "init", baudrate)

    def deinit(self):
        record("SPI", self._id, "deinit")

    def _clock(self, out):
        rx = _mpmock.spi_rx.get(self._id)
        n = len(out)
        if rx:
            data = rx[:n]
            _mpmock.spi_rx[self._id] = rx[n:]
            return data + bytes(out[len(data) :])
        return bytes(out)

    def write(self, buf):
        record("SPI", self._id, "write", bytes(buf))

    def read(self, nbytes, write=0):
        return self._clock(bytes([write]) * nbytes)

    def readinto(self, buf, write=0):
        buf[:] = self.read(len(buf), write)

    def write_readinto(self, wbuf, rbuf):
        record("SPI", self._id, "write", bytes(wbuf))
        rbuf[:] = self._clock(wbuf)


class SoftSPI(SPI):
    def __init__(self, baudrate=500000, **kw):
        SPI.__init__(self, "soft", baudrate)


class UART:
    INV_TX = 1
    INV_RX = 2
    RTS = 1
    CTS = 2
    IRQ_RXIDLE = 4

    def __init__(self, id, baudrate=115200, *args, **kw):
        self._id = id
        self.init(baudrate, **kw)

    def init(self, baudrate=115200, bits=8, parity=None, stop=1, **kw):
        self._timeout = kw.get("timeout", 0)
        record("UART", self._id, "init", baudrate)

    def deinit(self):
        record("UART", self._id, "deinit")

    def _rx(self):
        return _mpmock.uart_rx.get(self._id, b"")

    def any(self):
        return len(self._rx())

    def read(self, nbytes=-1):
        rx = self._rx()
        if not rx:
            return None
        n = len(rx) if nbytes is None or nbytes < 0 else nbytes
        _mpmock.uart_rx[self._id] = rx[n:]
        return rx[:n]

    def readinto(self, buf, nbytes=-1):
        data = self.read(len(buf) if nbytes < 0 else nbytes)
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def readline(self):
        rx = self._rx()
        i = rx.find(b"\n")
        return self.read(len(rx) if i < 0 else i + 1)

    def write(self, buf):
        record("UART", self._id, "write", bytes(buf))
        return len(buf)

    def flush(self):
        pass

    def txdone(self):
        return True

    def sendbreak(self):
        record("UART", self._id, "sendbreak")

    def irq(self, handler=None, trigger=0, hard=False):
        record("UART", self._id, "irq", trigger)


class RTC:
    def __init__(self, id=0):
        self._offset = _mpmock.inputs.get("rtc_offset", 0)

    def datetime(self, *args):
        if args:
            y, mo, d, wd, h, mi, s, sub = args[0]
            now = time.mktime((y, mo, d, h, mi, s, wd, 0))
            _mpmock.inputs["rtc_offset"] = self._offset = now - time.time()
            record("RTC", 0, "datetime", tuple(args[0]))
            return None
        t = time.localtime(time.time() + self._offset)
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)

    def init(self, dt):
        self.datetime(dt)

    def memory(self, *args):
        if args:
            _mpmock.inputs["rtc_memory"] = bytes(args[0])
            return None
        return _mpmock.inputs.get("rtc_memory", b"")


class Timer:
    ONE_SHOT = 0
    PERIODIC = 1

    def __init__(self, id=-1, *args, **kw):
        self._id = id
        self._cb = None
        self._mode = 1
        if args or kw:
            self.init(*args, **kw)

    def init(self, *, mode=1, period=-1, freq=-1, tick_hz=1000, callback=None):
        self._mode = mode
        self._cb = callback
        _mpmock.timers[self._id] = self
        record("Timer", self._id, "init", (mode, period if period != -1 else freq))

    def deinit(self):
        _mpmock.timers.pop(self._id, None)
        record("Timer", self._id, "deinit")


class WDT:
    def __init__(self, id=0, timeout=5000):
        self._timeout = timeout
        record("WDT", id, "init", timeout)

    def feed(self):
        record("WDT", 0, "feed")
