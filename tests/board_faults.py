"""Helpers shared by the fault tests: a long board call and a trigger on its output."""

from __future__ import annotations

from collections.abc import Callable

# Runs for a while, printing "go" first so the test knows the call is under way.
LONG_CALL = "print('go')\nimport time\ntime.sleep(5)\nprint('done')"


def when_printed(word: bytes, action: Callable[[], None]) -> Callable[[bytes], None]:
    """An ``on_stdout`` callback that runs ``action`` once, when the board has printed
    ``word``."""
    seen = bytearray()
    done = False

    def on_stdout(data: bytes) -> None:
        nonlocal done
        seen.extend(data)
        if not done and word in seen:
            done = True
            action()

    return on_stdout
