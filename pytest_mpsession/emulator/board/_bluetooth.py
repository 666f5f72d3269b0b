# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `bluetooth` (esp32): BLE records every call; events are delivered from the host side
# with _mpmock.inputs['ble'].irq_handler(event, data) if a test needs one.
import _mpmock
from _mpmock import record

FLAG_READ = 0x02
FLAG_WRITE_NO_RESPONSE = 0x04
FLAG_WRITE = 0x08
FLAG_NOTIFY = 0x10
FLAG_INDICATE = 0x20


class UUID:
    def __init__(self, value):
        self._v = value

    def __eq__(self, other):
        return isinstance(other, UUID) and other._v == self._v

    def __repr__(self):
        return "UUID(%r)" % (self._v,)


class BLE:
    def __init__(self):
        self._active = False
        self._irq = None
        _mpmock.inputs["ble"] = self

    def active(self, *args):
        if args:
            self._active = bool(args[0])
            record("BLE", 0, "active", self._active)
            return None
        return self._active

    def config(self, *args, **kw):
        if kw:
            record("BLE", 0, "config", kw)
            return None
        if args and args[0] == "mac":
            return (0, _mpmock.cfg["uid"][:6])
        return None

    def irq(self, handler):
        self._irq = handler
        record("BLE", 0, "irq")

    def irq_handler(self, event, data):
        if self._irq is not None:
            return self._irq(event, data)

    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        record("BLE", 0, "gap_advertise", (interval_us, adv_data))

    def gap_scan(self, duration_ms, *args, **kw):
        record("BLE", 0, "gap_scan", duration_ms)

    def gap_connect(self, *args, **kw):
        record("BLE", 0, "gap_connect", args)

    def gap_disconnect(self, conn_handle):
        record("BLE", 0, "gap_disconnect", conn_handle)
        return True

    def gatts_register_services(self, services):
        record("BLE", 0, "gatts_register_services", len(services))
        out = []
        h = 1
        for _uuid, chars in services:
            handles = []
            for _c in chars:
                handles.append(h)
                h += 1
            out.append(tuple(handles))
        return tuple(out)

    def gatts_write(self, handle, data, send_update=False):
        _mpmock.inputs[("gatts", handle)] = bytes(data)
        record("BLE", 0, "gatts_write", (handle, bytes(data)))

    def gatts_read(self, handle):
        return _mpmock.inputs.get(("gatts", handle), b"")

    def gatts_notify(self, conn_handle, value_handle, data=None):
        record("BLE", 0, "gatts_notify", (conn_handle, value_handle, data))
