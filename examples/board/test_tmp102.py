"""A TMP102 temperature sensor driver, tested on the emulator's fake I2C device.

The driver talks to `machine.I2C` as on a real board; the test puts register values into the
emulated device (`_mpmock.add_i2c`) and checks what the driver reads and writes. Real
hardware has no `_mpmock`: the file's requirement skips it there.
"""

import _mpmock
from machine import I2C

requires_feature = ("emulator", "large_heap")

ADDR = 0x48


class TMP102:
    TEMP, CONFIG = 0x00, 0x01

    def __init__(self, i2c, addr=ADDR):
        self.i2c = i2c
        self.addr = addr

    def celsius(self):
        raw = self.i2c.readfrom_mem(self.addr, self.TEMP, 2)
        value = (raw[0] << 4) | (raw[1] >> 4)
        if value & 0x800:
            value -= 1 << 12
        return value * 0.0625

    def shutdown(self):
        self.i2c.writeto_mem(self.addr, self.CONFIG, bytes([0x61, 0xA0]))


def sensor(temp_bytes):
    dev = _mpmock.add_i2c(ADDR, bus=0)
    dev.mem[0] = temp_bytes[0]
    dev.mem[1] = temp_bytes[1]
    return TMP102(I2C(0)), dev


def test_positive_temperature():
    tmp, _dev = sensor(b"\x19\x00")  # 25.0 C
    assert tmp.celsius() == 25.0


def test_negative_temperature():
    tmp, _dev = sensor(b"\xe7\x00")  # -25.0 C, two's complement
    assert tmp.celsius() == -25.0


def test_shutdown_writes_config_register():
    tmp, dev = sensor(b"\x00\x00")
    tmp.shutdown()
    assert dev.writes[-1] == b"\x01\x61\xa0", dev.writes
