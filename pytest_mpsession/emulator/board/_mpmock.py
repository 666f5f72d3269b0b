# mypy: ignore-errors
# ruff: noqa
# (MicroPython code run by the emulated board, not CPython: shipped as package data)
# _mpmock: the emulated board's registry (MicroPython, runs on the board).
#
# The fake peripherals record what was done to them here, and read their inputs from here,
# so a test can drive a driver from the host side through the board's REPL:
#
#     import _mpmock
#     _mpmock.set_adc(26, 40000)           # next ADC(26).read_u16() returns 40000
#     _mpmock.set_pin(5, 1)                # input level of Pin(5) (fires its irq on an edge)
#     dev = _mpmock.add_i2c(0x3C, bus=0)   # a device answering on I2C bus 0 at 0x3C
#     dev.mem[0x10] = 0x42                 # ...its registers
#     _mpmock.uart_feed(1, b"OK\r\n")      # bytes UART(1) will read
#     _mpmock.take()                       # [(kind, id, what, value), ...] and clear
#
# Only names a board never has start with "_mpmock", so nothing here can shadow firmware.

log = []
pins = {}
pin_irq = {}
adc = {}
i2c_bus = {}
uart_rx = {}
spi_rx = {}
timers = {}
inputs = {}
cfg = None
cause = 1
LOG_MAX = 2000


def record(kind, ident, what, value=None):
    if len(log) >= LOG_MAX:
        del log[: LOG_MAX // 2]
    log.append((kind, ident, what, value))


def take(kind=None):
    """Return the records (of one kind, e.g. 'Pin') and forget them."""
    global log
    if kind is None:
        out = log
        log = []
        return out
    out = [r for r in log if r[0] == kind]
    log = [r for r in log if r[0] != kind]
    return out


def set_pin(ident, level):
    """Drive an input pin from outside; an edge fires the pin's irq handler."""
    old = pins.get(ident, 0)
    level = 1 if level else 0
    pins[ident] = level
    h = pin_irq.get(ident)
    if h is not None and old != level:
        handler, trigger, pin = h
        if (level and trigger & 2) or (not level and trigger & 1):
            handler(pin)


def set_adc(ident, value):
    """The raw 16-bit reading ADC(ident).read_u16() returns from now on."""
    adc[ident] = value


class Device:
    """A fake I2C device: registers in `mem`; a write's first byte sets the pointer."""

    def __init__(self, size=256, mem=None):
        self.mem = bytearray(mem) if mem is not None else bytearray(size)
        self.ptr = 0
        self.writes = []

    def write(self, data):
        data = bytes(data)
        self.writes.append(data)
        if data:
            self.ptr = data[0]
            for b in data[1:]:
                self.mem[self.ptr % len(self.mem)] = b
                self.ptr += 1

    def read(self, n):
        out = bytearray(n)
        for i in range(n):
            out[i] = self.mem[self.ptr % len(self.mem)]
            self.ptr += 1
        return bytes(out)


def add_i2c(addr, bus=0, size=256, mem=None):
    """Attach a fake device at `addr` on I2C bus `bus` (0, 1, ... or 'soft'); returns it."""
    dev = Device(size, mem)
    i2c_bus.setdefault(bus, {})[addr] = dev
    return dev


def remove_i2c(addr, bus=0):
    i2c_bus.get(bus, {}).pop(addr, None)


def uart_feed(ident, data):
    """Bytes that UART(ident) will receive."""
    uart_rx[ident] = uart_rx.get(ident, b"") + bytes(data)


def spi_feed(ident, data):
    """Bytes that SPI(ident) reads clock in (otherwise it reads back what it writes)."""
    spi_rx[ident] = spi_rx.get(ident, b"") + bytes(data)


def fire_timer(ident):
    """Run Timer(ident)'s callback once, as its interrupt would."""
    t = timers.get(ident)
    if t is not None and t._cb is not None:
        t._cb(t)
        if t._mode == 0:
            timers.pop(ident, None)


def set_input(name, value):
    """Other inputs: 'bootsel' (rp2), 'switch' (pyb), 'wlan_scan', 'wlan_fail', ..."""
    inputs[name] = value


# Set by the board's set-up (_mpmock_board), as closures that hold what they need:
# _signal(code) asks the relay for a reset (it never returns); _activate(cause) mounts the
# flash and sizes the RAM when this engine becomes the board.
_signal = None
_activate = None
_run_scripts = None


def _block(nbytes):
    # a tuple keeps its items inline: one heap block of the given size, whose id() is its
    # address (a bytearray's data would be a second, separate block)
    return (None,) * (nbytes // 8)


def _grab():
    # Every free byte, in blocks (4 KB, then smaller ones for the holes) chained onto the
    # ballast: nodes [next, block], so a block can be let go of in place (a list that grew
    # would need a free piece the size of its items).
    size = 4096
    while size >= 8:
        try:
            _ballast[0] = [_ballast[0], _block(size)]
        except MemoryError:
            size //= 2


def _above(limit):
    # bytes of the ballast's blocks at or above address ``limit``
    n = 0
    node = _ballast[0]
    while node is not None:
        b = node[1]
        if b is not None and id(b) >= limit:
            n += len(b) * 8 + 16
        node = node[0]
    return n


def _release(target):
    # the ballast's blocks highest in the heap go until ``target`` bytes are free: the
    # highest address below which the blocks above add up to ``target`` (binary search)
    lo = hi = 0
    node = _ballast[0]
    while node is not None:
        b = node[1]
        if b is not None:
            hi = id(b) if id(b) > hi else hi
            lo = id(b) if lo == 0 or id(b) < lo else lo
        node = node[0]
    while hi - lo > 8:
        mid = (lo + hi) // 2
        if _above(mid) >= target:
            lo = mid
        else:
            hi = mid
    # the released blocks' nodes leave the chain too (they lie between the blocks)
    prev = _ballast
    node = _ballast[0]
    while node is not None:
        b = node[1]
        if b is not None and id(b) >= lo:
            prev[0] = node[0]
        else:
            prev = node
        node = node[0]


def _take(target):
    # Take every free byte, then give back the blocks highest in the heap until ``target``
    # bytes are free: one piece at the top, as after a boot.  What was given back beyond the
    # target is taken again by one block, which lands at the bottom of that piece (first
    # fit), so the rest stays in one piece.  Blocks are let go of in a function that has
    # returned (the conservative GC keeps whatever the live C stack still shows); no probing
    # (it would keep the probes).
    import gc

    gc.collect()
    _grab()
    _release(target)
    gc.collect()
    extra = gc.mem_free() - target
    if extra >= 64:
        try:
            _ballast[0] = [_ballast[0], _block(extra - 48)]
        except MemoryError:
            pass
    gc.collect()


def _shrink():
    # Run by the relay at the first prompt. The engine was given room for the board's set-up;
    # ballast blocks take the surplus so gc.mem_free() and MemoryError are the board's.
    _take(cfg["free"])


def _trim():
    # Second pass, in a later exec: what the first pass still saw referenced from the C
    # stack (the conservative GC), and what the first exchange left behind, is free now.
    # The RAM is taken again, so that the board's free region is the top of the heap in
    # one piece.
    import gc

    _take(cfg["free"])
    _alloc_base[0] = gc.mem_alloc()


# gc.mem_alloc() of a booted board (1.9 boards count from there: see _mpmock_board)
_alloc_base = [0]
# the ballast: a chain of [next, block] nodes (see _grab)
_ballast = [None]
