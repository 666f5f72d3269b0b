"""Where the xdist workers of a pool tell each other what their boards answered.

Probes added by a conftest file that only collection finds (``tests/hw/conftest.py``) are
unknown to the controller, which identified the pool before any worker started and never
collects. Each worker finds them while collecting, runs them on its own board, and must
know every other board's answer before it decides its collection (keep the tests its
board can run, and those no board of the pool can run). The controller serves this
exchange on a loopback socket (:mod:`multiprocessing.connection`, with a key only the
run's workers are given): a worker sends its board's answer and blocks, with a deadline,
until every board of the pool has answered for the same set of probes.

The same place serves a run whose boards are labgrid places: the controller offers the
places' ports once it holds them (:meth:`Rendezvous.offer`, :func:`fetch_pool`), each worker
opens its own board and gives what it found (:func:`gather`), and every worker and the
controller get the whole pool from there (the controller never opens the boards itself).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

__all__ = ["Rendezvous", "RendezvousError", "exchange", "fetch_pool", "gather"]


class RendezvousError(Exception):
    """The exchange did not happen (the controller is gone, or a board never answered)."""


class Rendezvous:
    """The controller's side: collects, per probe set, each board's features, and answers
    each worker once every board of the pool is in (or ``timeout`` seconds after it asked).
    """

    def __init__(self, boards: int, timeout: float) -> None:
        self.boards = boards
        self.timeout = timeout
        self.authkey = secrets.token_bytes(16)
        self._listener = Listener(("127.0.0.1", 0), authkey=self.authkey)
        self.address: tuple[str, int] = self._listener.address
        #: probe-set digest -> board index -> the features it has (None: it could not tell)
        self._table: dict[str, dict[int, list[str] | None]] = {}
        self._changed = threading.Condition()
        self._closed = False
        #: what the workers of a run whose pool is still being taken wait for, by kind
        #: (see :meth:`offer`)
        self._offers: dict[str, dict[str, Any]] = {}
        #: per kind, what each board gave (see :meth:`give`)
        self._gathered: dict[str, dict[int, dict[str, Any]]] = {}
        self._thread = threading.Thread(
            target=self._serve, name="mpsession-rendezvous", daemon=True
        )
        self._thread.start()

    def to_dict(self) -> dict[str, Any]:
        """What a worker needs to take part (travels in ``workerinput``)."""
        return {
            "host": self.address[0],
            "port": self.address[1],
            "authkey": self.authkey.hex(),
            "timeout": self.timeout,
        }

    def _serve(self) -> None:
        while True:
            try:
                conn = self._listener.accept()
            except Exception:  # a stranger without the key, or the listener closed
                if self._closed:
                    return
                continue
            if self._closed:
                conn.close()
                return
            threading.Thread(
                target=self._answer, args=(conn,), name="mpsession-rendezvous-peer", daemon=True
            ).start()

    def _answer(self, conn: Connection) -> None:
        with conn:
            try:
                if not conn.poll(self.timeout):
                    return
                message = conn.recv()
                deadline = time.monotonic() + self.timeout
                if isinstance(message, tuple) and len(message) == 1:
                    conn.send(self._wait_offer(str(message[0]), deadline))
                    return
                if isinstance(message, tuple) and len(message) == 4 and message[0] == "gather":
                    _, kind, index, payload = message
                    self.give(str(kind), int(index), dict(payload))
                    conn.send(self._wait_offer(str(kind), deadline))
                    return
                digest, index, features = message
                with self._changed:
                    answers = self._table.setdefault(str(digest), {})
                    answers[int(index)] = None if features is None else list(features)
                    self._changed.notify_all()
                    while len(answers) < self.boards and not self._closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._changed.wait(left)
                    reply = dict(answers)
                conn.send(reply)
            except (OSError, EOFError, ValueError, TypeError):
                return  # the worker went away or spoke nonsense: nothing to answer

    def offer(self, kind: str, payload: dict[str, Any]) -> None:
        """Hand ``payload`` (``{"error": ...}`` when it failed) to every worker that asks
        for ``kind`` with :func:`fetch_pool`, now and later; a kind is offered once."""
        with self._changed:
            self._offers.setdefault(kind, payload)
            self._changed.notify_all()

    def give(self, kind: str, index: int, payload: dict[str, Any]) -> None:
        """Board ``index``'s part of ``kind`` (its first counts); once every board of the
        pool gave its part, ``kind`` is offered: ``{"answers": [part, ...]}`` in pool
        order, or the first part (in pool order) that is ``{"error": ...}``."""
        with self._changed:
            parts = self._gathered.setdefault(kind, {})
            parts.setdefault(index, payload)
            if len(parts) < self.boards or kind in self._offers:
                return
            answers = [parts[i] for i in sorted(parts)]
            failed = next((a for a in answers if "error" in a), None)
            self._offers[kind] = failed if failed is not None else {"answers": answers}
            self._changed.notify_all()

    def wait(self, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """The controller's side of :func:`gather`: ``kind`` once offered (or an error
        after ``timeout`` seconds, default the rendezvous's)."""
        left = self.timeout if timeout is None else timeout
        return self._wait_offer(kind, time.monotonic() + left)

    def _wait_offer(self, kind: str, deadline: float) -> dict[str, Any]:
        with self._changed:
            while kind not in self._offers and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            if kind in self._offers:
                return self._offers[kind]
        if kind in self._gathered:
            missing = self.boards - len(self._gathered[kind])
            return {
                "error": f"{missing} board(s) of the pool were not identified in time (their "
                "pytest-xdist workers did not start or could not reach the controller)"
            }
        return {"error": "the pytest-xdist controller did not find the pool's boards in time"}

    def close(self) -> None:
        """Stop serving (workers still waiting get what is known)."""
        if self._closed:
            return
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        try:  # wake the accept() the serving thread is blocked in
            Client(self.address, authkey=self.authkey).close()
        except Exception:
            pass
        self._thread.join(5)
        self._listener.close()


def _ask(meet: dict[str, Any], message: tuple[Any, ...], what: str) -> Any:
    """Send ``message`` to the controller's rendezvous and block, with its deadline, for
    the reply; ``what`` names the reply in the error when none comes."""
    address = (str(meet["host"]), int(meet["port"]))
    timeout = float(meet.get("timeout", 60.0))
    try:
        with Client(address, authkey=bytes.fromhex(str(meet["authkey"]))) as conn:
            conn.send(message)
            if not conn.poll(timeout + 5):
                raise RendezvousError(f"no {what} within {timeout:g} s")
            return conn.recv()
    except (OSError, EOFError) as exc:
        raise RendezvousError(f"the pytest-xdist controller did not answer: {exc}") from None


def exchange(
    meet: dict[str, Any], digest: str, index: int, features: Sequence[str] | None
) -> dict[int, list[str] | None]:
    """A worker's side: give board ``index``'s answer for the probe set ``digest`` and get
    every board's (by pool index; a board that did not answer in time is missing)."""
    message = (digest, index, None if features is None else sorted(features))
    reply = _ask(meet, message, "answer from the other boards")
    return {int(k): v for k, v in dict(reply).items()}


def fetch_pool(meet: dict[str, Any], kind: str) -> dict[str, Any]:
    """A worker's side, while the controller still takes the pool (labgrid places): block
    until the controller offers ``kind`` (see :meth:`Rendezvous.offer`)."""
    return dict(_ask(meet, (kind,), "pool from the controller"))


def gather(meet: dict[str, Any], kind: str, index: int, payload: dict[str, Any]) -> dict[str, Any]:
    """A worker's side: give board ``index``'s part of ``kind`` (``{"error": ...}`` when it
    has none) and block until every board's is in (see :meth:`Rendezvous.give`)."""
    return dict(_ask(meet, ("gather", kind, index, payload), f"{kind} from the other boards"))
