"""The raw REPL, client side: control bytes (:mod:`.constants`) and the sans-IO engine."""

from __future__ import annotations

from pytest_mpsession.protocol.engine import (
    INTERRUPT,
    NEED_DATA,
    Event,
    ExecFinished,
    ExecStarted,
    LeftRawRepl,
    NeedData,
    RawPasteAccepted,
    RawPasteRefused,
    RawReplClient,
    RawReplEntered,
    SoftResetStarted,
    State,
    Stderr,
    Stdout,
    Stray,
    Synced,
)

__all__ = [
    "INTERRUPT",
    "NEED_DATA",
    "Event",
    "ExecFinished",
    "ExecStarted",
    "LeftRawRepl",
    "NeedData",
    "RawPasteAccepted",
    "RawPasteRefused",
    "RawReplClient",
    "RawReplEntered",
    "SoftResetStarted",
    "State",
    "Stderr",
    "Stdout",
    "Stray",
    "Synced",
]
