"""The options of an emulated board: link and board faults, flash image, profiles file.

They arrive as the query of an ``mpmock://PROFILE?opt=val&...`` URL, as keyword arguments of
:class:`~pytest_mpsession.emulator.PtyBoard`, or as ``--opt`` flags of the CLI; one parser
checks them all so every way in rejects the same bad values with the same one-line message.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pytest_mpsession.emulator.engine import EmulatorError

__all__ = ["OPTION_NAMES", "Options", "parse_options"]

#: option -> what its value must be (shown when a value is bad)
_KINDS: dict[str, str] = {
    "seed": "an integer",
    "baudrate": "a positive integer",
    "latency_ms": "a number >= 0",
    "garbage": "a probability between 0 and 1",
    "drop": "a probability between 0 and 1",
    "disconnect": "a probability between 0 and 1",
    "disconnect_after": "an integer >= 0",
    "reset": "a probability between 0 and 1",
    "hang": "a probability between 0 and 1",
    "flash": "a file path",
    "profiles": "a TOML file path",
}
OPTION_NAMES: tuple[str, ...] = tuple(_KINDS)


@dataclass(frozen=True)
class Options:
    """Parsed board options (see the table in ``API.md``, section "The emulator")."""

    seed: int | None = None
    baudrate: int = 0
    latency_ms: float = 0.0
    garbage: float = 0.0
    drop: float = 0.0
    disconnect: float = 0.0
    disconnect_after: int | None = None
    reset: float = 0.0
    hang: float = 0.0
    flash: str | None = None
    profiles: str | None = None

    def rng(self) -> random.Random:
        """The generator of every random fault: seeded, so a seed repeats the same faults."""
        return random.Random(self.seed)

    @property
    def faulty(self) -> bool:
        """Whether any per-exchange fault can happen."""
        return bool(self.garbage or self.disconnect or self.reset or self.hang)


def _bad(name: str, value: object) -> EmulatorError:
    return EmulatorError(f"emulator option {name}={value!r} is invalid: it must be {_KINDS[name]}")


def parse_options(raw: dict[str, object]) -> Options:
    """Check and convert options given as strings (URL query) or Python values.

    An unknown name is an :class:`EmulatorError` listing the valid ones.
    """
    values: dict[str, object] = {}
    for name, value in raw.items():
        if name not in _KINDS:
            raise EmulatorError(
                f"unknown emulator option {name!r}; valid options: {', '.join(OPTION_NAMES)}"
            )
        try:
            if name in ("seed",):
                values[name] = int(str(value))
            elif name in ("baudrate",):
                v = int(str(value))
                if v <= 0:
                    raise ValueError
                values[name] = v
            elif name == "disconnect_after":
                v = int(str(value))
                if v < 0:
                    raise ValueError
                values[name] = v
            elif name == "latency_ms":
                f = float(str(value))
                if not f >= 0:
                    raise ValueError
                values[name] = f
            elif name in ("flash", "profiles"):
                s = str(value)
                if not s:
                    raise ValueError
                values[name] = s
            else:
                f = float(str(value))
                if not 0.0 <= f <= 1.0:
                    raise ValueError
                values[name] = f
        except ValueError:
            raise _bad(name, value) from None
    return Options(**values)  # type: ignore[arg-type]
