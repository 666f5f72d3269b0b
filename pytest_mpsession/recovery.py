"""Recovery of a board after a fault: the escalation behind ``Communicator.recover``.

A call that goes wrong (no answer, noise instead of the reply, the board's boot text instead
of the reply, the link dropping) ends in an error that says what happened to the board,
*after* the board was brought back to an idle raw-REPL prompt by :meth:`Recovery.recover`,
which escalates: interrupt (Ctrl-C, resync), soft reset (Ctrl-D), the reset line (where the
port has one), reopening the port (with a bounded backoff, as a USB board re-enumerates).
Whether the board's RAM survived is not guessed from its chatter: a marker variable
(``__mpsession_up``) set in the board's RAM says it. A lost RAM counts as a reset
(``reset_count`` and the reset listeners). When nothing brings the board back, the
communicator is *broken*: every later call fails at once with :class:`BoardBrokenError` (no
more timeouts to wait out) until :meth:`Recovery.recover` succeeds.

:class:`Recovery` is a mixin of :class:`~pytest_mpsession.communicator.Communicator`: it
holds the escalation and the wording of the errors; the I/O loop it drives is the
communicator's.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from pytest_mpsession.errors import (
    BoardBrokenError,
    BoardDisconnectedError,
    BoardFault,
    BoardHungError,
    BoardNoiseError,
    BoardResetError,
    DeviceConnectionError,
    DeviceTimeout,
    ProtocolError,
    RecoveryReport,
)
from pytest_mpsession.protocol.constants import (
    CTRL_C,
    CTRL_D,
    FRIENDLY_PROMPT,
    RAW_REPL_BANNER,
    RAW_REPL_PROMPT,
)
from pytest_mpsession.protocol.engine import RawReplClient, State
from pytest_mpsession.transport import Transport

__all__ = ["RECOVERY_TIMEOUT", "KeepsRebooting", "Recovery", "RecoveryReport"]

# How long a faulted board gets to come back, all escalation steps together (a USB board
# re-enumerating after a reset takes a second or two of it).
RECOVERY_TIMEOUT: Final = 5.0
# The share of a recovery's time each step gets before the next one is tried; reopening the
# port, the last step, gets whatever is left.
STEP_SHARE: Final = {"interrupt": 0.35, "soft reset": 0.15, "reset line": 0.2}
# Opening never pulses the reset line (the API's promise) and waits longer for an interrupt:
# a board may be busy printing.
OPEN_STEP_SHARE: Final = {"interrupt": 0.6, "soft reset": 0.2}
# Reopening the port when it is not the last step (the link dropped: reopen first).
_REOPEN_SHARE: Final = 0.5
# Escalation rounds at most: a second one when a fault struck the first round itself; and
# never more steps than this in one recovery.
_RECOVERY_ROUNDS: Final = 2
_MAX_STEPS: Final = 10
# Reboots met while recovering that are answered by entering again (each costs the board's
# boot time); more than this and the escalation goes on as for any failed step.
_MAX_REBOOTS: Final = 20
# The budget counts progress, not only wall time: a board that rebooted again after it had
# answered at its raw prompt (it came back, then a reset struck the RAM check or the
# wrapper's install) is alive, and gets this share of the budget afresh from then on, as
# long as the whole recovery stays within this many budgets. A board that never answers
# (or reboots while being entered: a boot loop) gets the budget once.
_PROGRESS_SHARE: Final = 0.5
_PROGRESS_BUDGETS: Final = 4.0
# After noise where a reply should start: how long the reply of the code (which the board
# most likely runs all the same) may take to end before the recovery interrupts it.
REPLY_END_WAIT: Final = 0.25
# The board-side marker of "this RAM is the one we talked to": set once per board life.
RAM_MARK: Final = "__mpsession_up"
# The check echoes the name it looked for: a byte lost on the way (this code is sent
# unchecked) shows as another name, never as a wrong answer.
RAM_CHECK: Final = f"(lambda n:print(n,n in globals()))('{RAM_MARK}')"
# How much of the latest input is kept to recognise boot text and for error messages.
TAIL: Final = 512
# What a rebooted board ends its chatter with: the raw-REPL banner (a soft reboot in the raw
# REPL), or the friendly prompt after a banner (a hard reset: brown-out, watchdog).
_BOOT_WORDS: Final = (b"MicroPython v", b'Type "help()"', b"soft reboot", b"rst:0x")
# Installing the checked-exchange wrapper after a recovery gets at least this long.
INSTALL_TIME: Final = 1.0
RUNNING: Final = frozenset({State.STDOUT, State.STDERR, State.PROMPT})


class NoAnswer(DeviceConnectionError):
    """The board did not show the raw-REPL banner in time (the link itself works)."""


class KeepsRebooting(NoAnswer):
    """The board rebooted again each time it was asked to enter the raw REPL."""


class Rebooted(Exception):
    """Internal: boot text arrived while no code of ours runs (entering, syncing)."""


class Fault(Exception):
    """Internal: an exchange went wrong; ``kind`` as in :attr:`BoardFault.fault`."""

    def __init__(self, kind: str, detail: str, cause: BaseException | None = None) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.cause = cause
        #: bytes the code printed before the fault (a timeout of a board that was talking)
        self.printed = 0
        #: the end of what it printed
        self.tail = b""
        #: whether the code ran (True), did not (False), or nobody knows (None)
        self.ran: bool | None = None


def looks_rebooted(tail: bytes) -> bool:
    """Whether ``tail`` (the latest bytes from the board) ends with a rebooted board's
    prompt: the raw-REPL banner after a soft reboot, or the friendly prompt after a banner."""
    if tail.endswith(RAW_REPL_BANNER + RAW_REPL_PROMPT):
        return b"soft reboot" in tail or b"MicroPython v" in tail
    if tail.endswith(FRIENDLY_PROMPT):
        return any(word in tail for word in _BOOT_WORDS)
    return False


class Recovery:
    """The escalation of a communicator (mixed into
    :class:`~pytest_mpsession.communicator.Communicator`, whose I/O loop it drives)."""

    port: str
    recovery_timeout: float
    reset_count: int
    broken: str | None
    last_recovery: RecoveryReport | None
    _transport: Transport
    lock: threading.RLock
    _engine: RawReplClient
    _armed: bool
    _tail: bytearray

    # the communicator's I/O loop, used by the steps
    def _enter(self, deadline: float, timeout: float) -> None:
        raise NotImplementedError

    def _stop_running(self, deadline: float) -> bool:
        raise NotImplementedError

    def _sync(self, deadline: float, timeout: float) -> None:
        raise NotImplementedError

    def _unchecked(self, code: str, deadline: float) -> tuple[bytes, bytes]:
        raise NotImplementedError

    def _install(self, deadline: float) -> None:
        raise NotImplementedError

    def _check_open(self) -> None:
        raise NotImplementedError

    def _notify_reset(self) -> None:
        raise NotImplementedError

    def recover(self, timeout: float | None = None) -> RecoveryReport:
        """Bring the board back to an idle raw-REPL prompt, whatever happened to it.

        Escalates, each step given a share of ``timeout`` (default ``recovery_timeout``):
        interrupt (Ctrl-C, Ctrl-A, resync), soft reset (Ctrl-D), the reset line (where the
        port has one), reopening the port (retried with a bounded backoff: a USB board
        re-enumerating). A lost RAM is counted as a reset (``reset_count``, the reset
        listeners). Clears :attr:`broken` on success; :class:`BoardBrokenError` (with the
        report) when nothing worked. A board that answers and then reboots again (a reset
        striking the recovery's own exchanges) is making progress: it gets more time, up to
        four times ``timeout`` in all.
        """
        limit = self.recovery_timeout if timeout is None else timeout
        with self.lock:
            self._check_open()
            report = self._recover_now("manual", limit)
            if not report.recovered:
                err = BoardBrokenError(
                    f"{self.port}: the board did not come back within {limit:g} s (tried "
                    f"{', '.join(dict.fromkeys(report.steps))}; last: {report.detail}); "
                    "power-cycle or replug it",
                    port=self.port,
                )
                err.fault = "broken"
                err.recovery = report
                raise err
            return report

    def _recover_now(self, kind: str, budget: float | None = None) -> RecoveryReport:
        """Recover after a fault of ``kind``; never raises for the board's sake. Updates
        :attr:`broken`, :attr:`last_recovery`, ``reset_count`` and the listeners."""
        limit = self.recovery_timeout if budget is None else budget
        report = self._bring_back(
            limit, STEP_SHARE, verify=True, link_lost=kind == "disconnect", hint=kind
        )
        self.last_recovery = report
        if report.recovered:
            self.broken = None
            if report.ram_lost:
                self.reset_count += 1
                self._notify_reset()
        else:
            self.broken = report.detail or "it does not answer"
        return report

    def _bring_back(
        self,
        budget: float,
        shares: dict[str, float],
        *,
        verify: bool,
        link_lost: bool = False,
        hint: str = "",
    ) -> RecoveryReport:
        """The escalation: each step in ``shares`` gets its share of ``budget``, reopening
        the port the rest. A broken link skips to reopening, and so does a board that hangs
        right after it answered (a fault that struck the recovery itself); when every step
        failed, one more round in what time is left. ``verify``: once at a prompt, resync
        and check the RAM marker."""
        start = time.monotonic()
        deadline = start + budget
        steps: list[str] = []
        detail = ""
        full = [name for name in shares if name != "reset line" or self._has_reset_line()]
        full.append("reopen")
        cures_hang = [name for name in full if name in ("reset line", "reopen")]
        queue = ["reopen", *full] if link_lost else list(full)
        rounds_left = _RECOVERY_ROUNDS - 1
        was_armed = self._armed
        lost_seen = False
        reboots = 0  # reboots met during this recovery (each one retried by entering again)
        # the latest the deadline may be moved to by a board that comes back (see
        # _PROGRESS_SHARE)
        latest = start + budget * _PROGRESS_BUDGETS
        while time.monotonic() < deadline and len(steps) - reboots < _MAX_STEPS:
            if not queue:
                if not rounds_left:
                    break
                rounds_left -= 1
                queue = list(full)
            step = queue.pop(0)
            now = time.monotonic()
            share = budget * shares.get(step, _REOPEN_SHARE)
            step_end = deadline if not queue else min(deadline, now + share)
            steps.append(step)
            verifying = False
            answered = False  # the board was at its raw prompt in this step
            try:
                self._step(step, step_end, budget, "reset" if reboots else hint)
                answered = True
                # boot text taken in while entering is spent: only text that comes after
                # this says the board rebooted again
                self._tail.clear()
                lost = False
                if verify:
                    verifying = True
                    # the board just answered: a tiny exchange needs little time
                    end = min(deadline, time.monotonic() + max(0.3, budget * 0.2))
                    missing = self._verify(end, known_lost=lost_seen)
                    # once seen missing, the RAM stays lost for this recovery, whatever a
                    # later check (after the marker was set again) says
                    lost_seen = lost_seen or (missing and was_armed)
                    lost = lost_seen
            except KeepsRebooting:
                # every reboot leaves it at a fresh prompt: enter again (the deadline and
                # _MAX_REBOOTS bound a board that boots for ever)
                detail = f"{step}: the board keeps rebooting"
                lost_seen = True
                reboots = self._after_reboot(queue, reboots)
                continue
            except NoAnswer:
                detail = f"{step}: no raw REPL answer"
                if verifying:
                    queue = [name for name in cures_hang if name != step] or list(cures_hang)
                continue
            except Rebooted:
                detail = f"{step}: the board rebooted again"
                lost_seen = True  # whatever a marker check says later, this RAM is new
                reboots = self._after_reboot(queue, reboots)
                if answered:
                    deadline = self._progress(deadline, latest, budget)
                continue
            except (Fault, ProtocolError) as exc:
                detail = f"{step}: {self._short_reason(exc)}"
                if isinstance(exc, Fault) and self._rebooted_meanwhile(exc):
                    # the board rebooted while being brought back (its boot text where an
                    # answer was due, or the wrapper gone): it sits at a fresh prompt, so
                    # entering again is what it needs, not a harsher step
                    lost_seen = True
                    reboots = self._after_reboot(queue, reboots)
                    if answered:
                        deadline = self._progress(deadline, latest, budget)
                    continue
                if isinstance(exc, Fault) and exc.kind == "disconnect":
                    queue = ["reopen"]  # the link dropped again: a reset cannot cure a link
                elif verifying and isinstance(exc, Fault) and exc.kind == "timeout":
                    # it answered, then hung: only a reset or a reopened port cures that
                    queue = [name for name in cures_hang if name != step] or list(cures_hang)
                continue
            except DeviceConnectionError as exc:
                detail = f"{step}: {self._short_reason(exc)}"
                # the link itself is gone (again, if it just came back): only reopening can
                # help, with what time is left (the reopen retries with a backoff)
                queue = ["reopen"]
                continue
            if not was_armed and (step != "interrupt" or hint == "reset"):
                lost = True  # no marker to tell: say lost, the safe side
            if "soft reset" in steps or "reset line" in steps:
                # A reset was sent: it acted, or the board (busy, or slow to read its
                # input) will act on it later. Its RAM counts as lost either way: sessions
                # then set up their board state again rather than trusting it.
                lost = True
            if not verify:
                lost = lost_seen
            return RecoveryReport(tuple(steps), True, lost, time.monotonic() - start)
        return RecoveryReport(tuple(steps), False, False, time.monotonic() - start, detail)

    @staticmethod
    def _progress(deadline: float, latest: float, budget: float) -> float:
        """The deadline after a board came back and then rebooted again (progress: it
        answered): a fresh share of the budget from now, never past ``latest``."""
        return max(deadline, min(latest, time.monotonic() + budget * _PROGRESS_SHARE))

    def _after_reboot(self, queue: list[str], reboots: int) -> int:
        """After a reboot met while recovering: enter again first (the board sits at its
        fresh prompt), up to ``_MAX_REBOOTS`` times; returns the reboots counted so far.
        A reboot takes the board's boot time, so the deadline bounds this too."""
        if reboots < _MAX_REBOOTS:
            queue.insert(0, "interrupt")
            return reboots + 1
        return reboots

    def _rebooted_meanwhile(self, fault: Fault) -> bool:
        """Whether a fault met while recovering was the board rebooting: its wrapper gone,
        or boot text where an answer was due."""
        if fault.kind == "disconnect":
            return False  # a link that dropped: only reopening cures that
        tail = bytes(self._tail)
        return fault.kind == "reset" or any(word in tail for word in _BOOT_WORDS[:2])

    def _has_reset_line(self) -> bool:
        # A pseudo-terminal or a socket has no modem lines; asking costs nothing.
        return self._transport.has_reset_line

    def _short_reason(self, exc: BaseException) -> str:
        """An error's text for a recovery report: one line, without the port's name."""
        text = " ".join(str(exc).split())
        for prefix in (f"cannot open {self.port}: ", f"{self.port}: "):
            text = text.replace(prefix, "")
        if len(text) > 120:
            text = text[:117].rsplit(" ", 1)[0] + "..."
        return text

    def _step(self, step: str, step_end: float, budget: float, hint: str = "") -> bool:
        """One escalation step; True when the board is at a raw-REPL prompt afterwards."""
        eng = self._engine
        transport = self._transport
        if step == "interrupt":
            # After boot text the board sits at a prompt: nothing runs to stop. Otherwise
            # Ctrl-C gets half the step, entering the raw REPL the rest.
            if eng.state in RUNNING and hint != "reset":
                half = time.monotonic() + (step_end - time.monotonic()) / 2
                if self._stop_running(half):
                    return True
            if eng.state is State.ERROR:
                self._let_reply_end(min(step_end, time.monotonic() + REPLY_END_WAIT))
            self._enter(step_end, budget)
            return True
        if step == "soft reset":
            # Ctrl-D on an empty line (friendly or raw REPL) reboots the board: Ctrl-C first
            # empties the line (a CR would be code in the raw REPL, and Ctrl-D would run it).
            transport.write(CTRL_C + CTRL_C + CTRL_D)
            self._enter(step_end, budget)
            return True
        if step == "reset line":
            if not transport.pulse_reset():
                raise NoAnswer(f"{self.port}: the reset line cannot be pulsed", port=self.port)
            self._enter(step_end, budget)
            return True
        # reopen: the port may be gone for a while (re-enumeration)
        transport.reopen(max(0.0, step_end - time.monotonic()))
        transport.discard_input()
        self._enter(step_end, budget)
        return True

    def _let_reply_end(self, deadline: float) -> None:
        """After noise where a reply should start, the board is most likely running the
        code all the same: let its reply end (``EOT EOT >``) before interrupting, so a
        Ctrl-C never lands in code that runs fine (or in the next code, late)."""
        end = CTRL_D + CTRL_D + RAW_REPL_PROMPT
        while not self._tail.endswith(end) and not looks_rebooted(bytes(self._tail)):
            data = self._transport.read_some(deadline)
            if not data:
                return
            self._tail += data
            del self._tail[:-TAIL]

    def _verify(self, deadline: float, *, known_lost: bool = False) -> bool:
        """Resync and check the RAM marker: True when it is missing (the board's RAM is not
        the one it was set in, or it was never set). The check changes nothing on the board;
        the marker is set again only after a check said it is missing, so a check whose
        answer was lost never hides a lost RAM from the next one. ``known_lost``: the board
        rebooted during this recovery, so the marker is gone: no check, only the resync."""
        # A byte lost on the way damages the (unchecked) check: it is asked again, up to
        # three times, before the step counts as failed.
        out = err = b""
        missing: bool | None = None
        for attempt in range(3):
            # each try gets its share of what is left, so a lost byte leaves time for more
            end = time.monotonic() + max(0.05, (deadline - time.monotonic()) / (3 - attempt))
            try:
                if attempt:
                    self._enter(end, max(0.0, end - time.monotonic()))
                self._sync(end, max(0.0, end - time.monotonic()))
                if known_lost:
                    missing = True
                    break
                out, err = self._unchecked(RAM_CHECK, end)
            except (Fault, NoAnswer) as exc:
                if isinstance(exc, Fault) and exc.kind == "reset":
                    # it rebooted under the check and then said its marker is gone: that is
                    # the answer (the board is back at its prompt)
                    missing = True
                    break
                if attempt == 2 or (isinstance(exc, Fault) and exc.kind == "disconnect"):
                    raise
                continue
            if not err and out.strip() in (
                RAM_MARK.encode() + b" True",
                RAM_MARK.encode() + b" False",
            ):
                missing = out.strip().endswith(b"False")
                break
        if missing is None:
            raise Fault("noise", f"the RAM check answered {out[-40:] + err[-40:]!r}")
        if missing or not self._armed:
            self._armed = False
            # installing takes a few exchanges: more than the check's share of the time
            self._install(max(deadline, time.monotonic() + INSTALL_TIME))
        return missing

    def _fault_error(self, fault: Fault, report: RecoveryReport, limit: float) -> Exception:
        """The error a faulted call raises, saying what happened and what was done."""
        port = self.port
        kind = fault.kind
        escalated = any(step != "interrupt" for step in report.steps)
        if kind == "timeout" and report.recovered and not escalated:
            if not report.ram_lost:
                what = (
                    f"the code was still running after {limit:g} s (the board was printing: "
                    f"{fault.printed} bytes so far, the last {fault.tail!r})"
                    if fault.printed
                    else f"no answer within {limit:g} s"
                )
                return DeviceTimeout(
                    f"{port}: {what}; the board was interrupted and is usable again",
                    timeout=limit,
                    port=port,
                    exc_type="KeyboardInterrupt",
                )
        if kind == "lost":
            # the code was not acknowledged: a board that then answered nothing but a reset
            # (or a reopened port) had hung; otherwise bytes were lost on the way
            kind = "timeout" if escalated and "soft reset" not in report.steps[-1:] else "noise"
            if kind == "timeout":
                limit = 0.0
        if report.ram_lost and (kind == "noise" or (kind == "timeout" and not escalated)):
            # Its RAM is gone though nothing but an interrupt was needed: what looked like
            # noise (or silence) was the board rebooting by itself.
            kind = "reset"
        if report.recovered:
            after = f"the board was {report.how} and is usable again" + (
                " (its RAM is gone)" if report.ram_lost else " (its RAM is intact)"
            )
        else:
            after = (
                f"the board did not come back: recovery failed (tried "
                f"{', '.join(dict.fromkeys(report.steps))} for {report.elapsed:.1f} s; last: "
                f"{report.detail}); it is broken until recover() succeeds (power-cycle or "
                "replug it)"
            )
        detail = self._short_reason(Exception(fault.detail))
        err: Exception
        if kind == "timeout":
            waited = f"within {limit:g} s" if limit else "to the code it was sent"
            err = BoardHungError(
                f"{port}: no answer {waited}, not even to Ctrl-C; {after}",
                timeout=limit,
                port=port,
            )
        elif kind == "reset":
            err = BoardResetError(
                f"{port}: the board reset during the call (brown-out, watchdog, crash or "
                f"reset); {after}",
                port=port,
            )
        elif kind == "disconnect":
            err = BoardDisconnectedError(
                f"{port}: the link to the board dropped during the call ({detail}); {after}",
                port=port,
            )
        else:
            if fault.ran:
                ran = (
                    "the code ran (the board started it), but its reply was damaged, so its "
                    "output and result are lost"
                )
            elif fault.ran is False:
                ran = "the code did not run (it arrived damaged each time it was sent)"
            else:
                ran = "the code may or may not have run"
            err = BoardNoiseError(
                f"{port}: the board sent noise instead of its reply ({detail}); {ran}; {after}"
            )
        assert isinstance(err, BoardFault)
        err.fault = kind
        err.recovery = report
        return err
