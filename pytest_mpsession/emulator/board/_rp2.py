# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# Fake `rp2`: PIO state machines record what they are given; bootsel_button() reads
# _mpmock.inputs['bootsel'].
import _mpmock
from _mpmock import record


def bootsel_button():
    return 1 if _mpmock.inputs.get("bootsel") else 0


def country(*args):
    return None


class PIOProgram:
    def __init__(self, func, kw):
        self.func = func
        self.kw = kw


def asm_pio(**kw):
    def wrap(func):
        return PIOProgram(func, kw)

    return wrap


class StateMachine:
    def __init__(self, id, program=None, freq=-1, **kw):
        self._id = id
        self._tx = []
        if program is not None:
            self.init(program, freq, **kw)

    def init(self, program, freq=-1, **kw):
        record("StateMachine", self._id, "init", freq)

    def active(self, *args):
        if args:
            record("StateMachine", self._id, "active", bool(args[0]))
            return None
        return False

    def put(self, value, shift=0):
        record("StateMachine", self._id, "put", value)

    def get(self, buf=None, shift=0):
        rx = _mpmock.inputs.get(("sm_rx", self._id), [])
        return rx.pop(0) if rx else 0

    def rx_fifo(self):
        return len(_mpmock.inputs.get(("sm_rx", self._id), []))

    def tx_fifo(self):
        return 0

    def irq(self, handler=None, trigger=0, hard=False):
        record("StateMachine", self._id, "irq")

    def exec(self, instr):
        record("StateMachine", self._id, "exec", instr)

    def restart(self):
        record("StateMachine", self._id, "restart")


class PIO:
    IN_LOW = 0
    IN_HIGH = 1
    OUT_LOW = 2
    OUT_HIGH = 3
    SHIFT_LEFT = 0
    SHIFT_RIGHT = 1
    JOIN_NONE = 0
    JOIN_TX = 1
    JOIN_RX = 2
    IRQ_SM0 = 0x100

    def __init__(self, id):
        self._id = id

    def state_machine(self, id, *args, **kw):
        return StateMachine(self._id * 4 + id, *args, **kw)

    def add_program(self, program):
        record("PIO", self._id, "add_program")

    def remove_program(self, program=None):
        record("PIO", self._id, "remove_program")


class Flash:
    def __init__(self):
        pass

    def ioctl(self, op, arg):
        return 0
