# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `esp32`.
import _mpmock
from _mpmock import record

HEAP_DATA = 4
HEAP_EXEC = 1
WAKEUP_ALL_LOW = 0
WAKEUP_ANY_HIGH = 1


def raw_temperature():
    return _mpmock.inputs.get("raw_temperature", 120)


def mcu_temperature():
    return _mpmock.inputs.get("mcu_temperature", 42)


def wake_on_ext0(pin, level):
    record("esp32", 0, "wake_on_ext0", level)


def idf_heap_info(capabilities):
    return []


class NVS:
    def __init__(self, namespace):
        self._ns = _mpmock.inputs.setdefault(("nvs", namespace), {})

    def set_i32(self, key, value):
        self._ns[key] = value

    def get_i32(self, key):
        if key not in self._ns:
            raise OSError(-4354)  # ESP_ERR_NVS_NOT_FOUND
        return self._ns[key]

    def set_blob(self, key, value):
        self._ns[key] = bytes(value)

    def get_blob(self, key, buffer):
        v = self._ns[key]
        buffer[: len(v)] = v
        return len(v)

    def erase_key(self, key):
        del self._ns[key]

    def commit(self):
        pass
