# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `network` (esp32): WLAN that connects to any access point unless told to fail
# (_mpmock.set_input('wlan_fail', True)); scan() returns _mpmock.inputs['wlan_scan'].
import _mpmock
from _mpmock import record

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_WRONG_PASSWORD = 202
STAT_NO_AP_FOUND = 201
STAT_CONNECT_FAIL = 203
AUTH_OPEN = 0
AUTH_WPA2_PSK = 3


def hostname(*args):
    if args:
        _mpmock.inputs["hostname"] = args[0]
        return None
    return _mpmock.inputs.get("hostname", "esp32")


class WLAN:
    IF_STA = 0
    IF_AP = 1

    def __init__(self, interface=0):
        self._if = interface
        self._active = False
        self._ssid = None
        self._status = STAT_IDLE
        self._cfg = {"mac": _mpmock.cfg["uid"][:6], "essid": "", "channel": 1}

    def active(self, *args):
        if args:
            self._active = bool(args[0])
            record("WLAN", self._if, "active", self._active)
            return None
        return self._active

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        record("WLAN", self._if, "connect", ssid)
        self._ssid = ssid
        if _mpmock.inputs.get("wlan_fail"):
            self._status = STAT_NO_AP_FOUND
        else:
            self._status = STAT_GOT_IP

    def disconnect(self):
        record("WLAN", self._if, "disconnect")
        self._status = STAT_IDLE

    def isconnected(self):
        return self._status == STAT_GOT_IP

    def status(self, *args):
        if args:
            return {"rssi": -50}.get(args[0])
        return self._status

    def scan(self):
        return list(_mpmock.inputs.get("wlan_scan", []))

    def ifconfig(self, *args):
        if args:
            _mpmock.inputs["ifconfig"] = tuple(args[0])
            return None
        if self._status != STAT_GOT_IP:
            return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
        return _mpmock.inputs.get(
            "ifconfig", ("192.168.4.2", "255.255.255.0", "192.168.4.1", "192.168.4.1")
        )

    def config(self, *args, **kw):
        if kw:
            self._cfg.update(kw)
            record("WLAN", self._if, "config", kw)
            return None
        return self._cfg.get(args[0])
