"""Control bytes and fixed strings of MicroPython's raw REPL (``docs/reference/repl.rst``).

Shared by the client-side engine and by the emulator (the board side): the single place
where these bytes are spelled out.
"""

from __future__ import annotations

CTRL_A = b"\x01"  # enter raw REPL (from the friendly REPL); in raw-paste: a window increment
CTRL_B = b"\x02"  # leave raw REPL, back to the friendly REPL (prints the banner)
CTRL_C = b"\x03"  # KeyboardInterrupt: stops running code, or clears the current line
CTRL_D = b"\x04"  # raw REPL: end of code (run it); on an empty line: soft reset.
#                   in replies: separates stdout / stderr / end of reply; raw-paste: end/abort
CTRL_E = b"\x05"  # friendly REPL: paste mode; raw REPL: first byte of the raw-paste request

RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n"
RAW_REPL_PROMPT = b">"
FRIENDLY_PROMPT = b">>> "
EXEC_OK = b"OK"  # plain raw mode: code received and compiled, about to run
SOFT_REBOOT = b"soft reboot\r\n"  # printed after a soft reset (newer firmware: "MPY: soft reboot")

RAW_PASTE_REQUEST = CTRL_E + b"A" + CTRL_A  # ask for raw-paste mode
RAW_PASTE_SUPPORTED = b"R\x01"  # followed by the window size, 16-bit little-endian
RAW_PASTE_UNSUPPORTED = b"R\x00"  # firmware knows raw-paste but refuses it
# Firmware from before raw-paste does not recognise the request at all and answers with the
# raw REPL banner again (see shared/transcripts/micropython-1.9.2-microbit.txt).
