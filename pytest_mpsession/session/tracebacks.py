"""Board tracebacks made to point at the code as the user wrote it.

The session runs user code with ``exec(code, namespace)`` from a one-line wrapper, so the
board's traceback has frames of the wrapper and of the helpers (file ``<stdin>``: everything
the plugin itself sent through the raw REPL) above the user's frames (file ``<string>``, with
the user's own line numbers, because the code is passed to ``exec`` unchanged).
:func:`clean_traceback` drops the ``<stdin>`` frames and maps the frames of functions deployed
by ``session.call`` back to the host file and line they came from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["HostSource", "clean_traceback"]

_FRAME = re.compile(r'^  File "(?P<file>[^"]*)", line (?P<line>\d+)(?:, in (?P<func>.+))?$')


@dataclass(frozen=True)
class HostSource:
    """Where a deployed function's source lives on the host: board line ``n`` of the deployed
    text is host line ``first_line + n - 1`` of ``host_file``; ``lines`` are the host lines."""

    host_file: str
    first_line: int
    lines: Sequence[str]

    def line_text(self, board_line: int) -> str:
        """The host source line behind ``board_line`` (stripped), or "" when out of range."""
        index = board_line - 1
        return self.lines[index].strip() if 0 <= index < len(self.lines) else ""


def clean_traceback(text: str, deployed: Mapping[str, HostSource]) -> str:
    """``text`` (a board traceback) without the plugin's frames, with the frames of deployed
    functions (``deployed``: board function name -> source) pointing at the host.

    A frame inside a deployed function's nested function (a name not in ``deployed``) is
    mapped with the deployed function that called it. When every frame is the plugin's
    (the failure is in the helper itself), the text is returned unchanged.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    out: list[str] = []
    frames = kept = 0
    last: HostSource | None = None
    for line in lines:
        match = _FRAME.match(line)
        if match is None:
            out.append(line)
            continue
        frames += 1
        file, func = match.group("file"), match.group("func") or ""
        if file == "<stdin>" or func.startswith("_mps"):
            # the raw REPL's own line, or the package's board helpers (the wrapper is
            # installed through exec, so its frames say "<string>" too)
            last = None
            continue
        kept += 1
        source = deployed.get(func) if file == "<string>" else None
        if source is None and file == "<string>" and func != "<module>":
            source = last
        if source is None:
            last = None
            out.append(line)
            continue
        last = source
        board_line = int(match.group("line"))
        host_line = source.first_line + board_line - 1
        out.append(f'  File "{source.host_file}", line {host_line}, in {func}')
        code = source.line_text(board_line)
        if code:
            out.append(f"    {code}")
    if frames and not kept:
        return text
    return "\n".join(out)
