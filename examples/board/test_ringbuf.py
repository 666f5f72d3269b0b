"""Unit tests of a ring buffer, run on the board (one pytest item per test).

The module is sent to the board once and its tests run there one by one; boards without
micropython-lib's unittest get the plugin's own. What a firmware team's module under test
would be (here inline, so the example is self-contained): a fixed-size byte FIFO for a UART
receive interrupt.
"""

import unittest

# Room to load this module with its docstrings (a 16 KB board has not): skipped there.
requires_feature = ("large_heap",)


class RingBuffer:
    def __init__(self, size):
        self.buf = bytearray(size)
        self.head = 0
        self.tail = 0
        self.count = 0

    def put(self, byte):
        if self.count == len(self.buf):
            raise OverflowError("ring buffer full")
        self.buf[self.head] = byte
        self.head = (self.head + 1) % len(self.buf)
        self.count += 1

    def get(self):
        if not self.count:
            raise IndexError("ring buffer empty")
        byte = self.buf[self.tail]
        self.tail = (self.tail + 1) % len(self.buf)
        self.count -= 1
        return byte


class TestRingBuffer(unittest.TestCase):
    def setUp(self):
        self.ring = RingBuffer(4)

    def test_fifo_order(self):
        for b in (1, 2, 3):
            self.ring.put(b)
        self.assertEqual([self.ring.get() for _ in range(3)], [1, 2, 3])

    def test_wraps_around(self):
        for b in range(10):
            self.ring.put(b)
            self.assertEqual(self.ring.get(), b)
        self.assertEqual(self.ring.count, 0)

    def test_full_raises(self):
        for b in range(4):
            self.ring.put(b)
        with self.assertRaises(OverflowError):
            self.ring.put(99)

    def test_empty_raises(self):
        with self.assertRaises(IndexError):
            self.ring.get()
