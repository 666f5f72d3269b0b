"""Serve emulated boards to any serial tool.

``python -m pytest_mpsession.emulator --pty LINK [--profile P] [--option NAME=VALUE ...]``
serves a board on a pseudo-terminal and makes LINK a symlink to it; ``--tcp HOST:PORT``
serves one on a TCP socket (loopback unless HOST says otherwise; one client at a time).
Repeat ``--pty``/``--tcp`` to serve several boards from one process; each gets the profile
and options given.  The boards end when this process ends (Ctrl-C, SIGTERM, or killed).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import socket
import sys
from collections.abc import Sequence

from pytest_mpsession.emulator.engine import EmulatorError
from pytest_mpsession.emulator.link import Link
from pytest_mpsession.emulator.options import OPTION_NAMES, parse_options
from pytest_mpsession.emulator.profiles import load_profile
from pytest_mpsession.emulator.pty_board import PtyBoard

__all__ = ["main"]


def _parse_tcp(spec: str) -> tuple[str, int]:
    host, _sep, port = spec.rpartition(":")
    if not port.isdigit():
        raise EmulatorError(f"--tcp {spec!r}: expected HOST:PORT or PORT (e.g. 127.0.0.1:2217)")
    return host or "127.0.0.1", int(port)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    ap = argparse.ArgumentParser(
        prog="python -m pytest_mpsession.emulator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--pty",
        action="append",
        default=[],
        metavar="LINK",
        help="serve a board on a PTY and symlink LINK to it (repeatable)",
    )
    ap.add_argument(
        "--tcp",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="serve a board on a TCP socket, loopback by default (repeatable)",
    )
    ap.add_argument("--profile", default="generic", help="board profile (default: generic)")
    ap.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"board option, one of: {', '.join(OPTION_NAMES)}",
    )
    args = ap.parse_args(argv)
    if not args.pty and not args.tcp:
        ap.error("give at least one --pty LINK or --tcp HOST:PORT")
    raw: dict[str, object] = {}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            ap.error(f"--option {item!r}: expected NAME=VALUE")
        raw[name] = value
    boards: list[PtyBoard] = []
    links: list[tuple[Link, socket.socket]] = []
    try:
        opts = parse_options(raw)
        profile = load_profile(args.profile, opts.profiles)
        for link_path in args.pty:
            board = PtyBoard(args.profile, **raw)
            boards.append(board)
            if os.path.lexists(link_path):
                os.unlink(link_path)
            os.symlink(board.path, link_path)
            sys.stderr.write(f"{profile.name} board on {board.path} (link {link_path})\n")
        for spec in args.tcp:
            host, port = _parse_tcp(spec)
            srv = socket.create_server((host, port))
            link = Link(profile, opts)
            link.start()
            links.append((link, srv))
            sys.stderr.write(f"{profile.name} board on tcp://{host}:{srv.getsockname()[1]}\n")
    except (EmulatorError, OSError) as exc:
        for b in boards:
            b.close()
        sys.stderr.write(f"error: {exc}\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    clients: dict[int, socket.socket] = {}
    try:
        while True:
            r, _, _ = select.select([s for _, s in links], [], [])
            for link, srv in links:
                if srv in r:
                    conn, _addr = srv.accept()
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    old = clients.pop(id(link), None)
                    clients[id(link)] = conn
                    link.attach(conn.fileno())
                    if old is not None:
                        old.close()
    except KeyboardInterrupt:
        return 0
    finally:
        for b in boards:
            b.close()
        for link, srv in links:
            link.close()
            srv.close()
        for link_path in args.pty:
            if os.path.islink(link_path):
                os.unlink(link_path)


if __name__ == "__main__":
    sys.exit(main())
