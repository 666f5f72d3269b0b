"""Serve emulated boards to any serial tool.

``python -m pytest_mpsession.emulator --pty LINK [--profile P] [--option NAME=VALUE ...]``
serves a board on a pseudo-terminal and makes LINK a symlink to it; ``--tcp HOST:PORT``
serves one on a TCP socket (loopback unless HOST says otherwise; one client at a time).
Repeat ``--pty``/``--tcp`` to serve several boards from one process; each gets the profile
and options given.  The boards end when this process ends (Ctrl-C, SIGTERM, or killed).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import select
import signal
import socket
import sys
import urllib.parse
from collections.abc import Sequence

from pytest_mpsession.emulator import sandbox
from pytest_mpsession.emulator.engine import EmulatorError
from pytest_mpsession.emulator.link import Link
from pytest_mpsession.emulator.options import OPTION_NAMES, parse_options
from pytest_mpsession.emulator.profiles import load_profile
from pytest_mpsession.emulator.pty_board import PtyBoard

__all__ = ["main"]


#: what a second TCP client reads before it is disconnected (ser2net's words)
BUSY_LINE = b"Port already in use\r\n"


def _parse_tcp(spec: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` (loopback), parsed by the standard library."""
    form = f"--tcp {spec!r}: expected HOST:PORT, [IPV6]:PORT or PORT (e.g. 127.0.0.1:2217)"
    if spec.isdigit():
        host, port = "127.0.0.1", int(spec)
    else:
        try:
            parts = urllib.parse.urlsplit("//" + spec)
            port_or_none = parts.port
        except ValueError:
            raise EmulatorError(form) from None
        if port_or_none is None or parts.path or parts.username or parts.query:
            raise EmulatorError(form)
        host, port = parts.hostname or "127.0.0.1", port_or_none
    if not 0 <= port <= 65535:
        raise EmulatorError(form)
    return host, port


def _is_loopback(host: str, port: int) -> bool:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return all(ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos)


def _gone(sock: socket.socket) -> bool:
    """Whether a client closed its end (what it sent and the link did not read yet stays)."""
    try:
        r, _, _ = select.select([sock], [], [], 0)
        return bool(r) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _make_link(link_path: str, target: str) -> None:
    """Make ``link_path`` a symlink to the PTY ``target``; never replace anything but a
    dangling link to a PTY (one an emulator left behind)."""
    if os.path.lexists(link_path):
        old = os.readlink(link_path) if os.path.islink(link_path) else None
        if old is None or not old.startswith("/dev/pts/") or os.path.exists(link_path):
            raise EmulatorError(
                f"--pty {link_path!r}: the path exists and is not a link this emulator made; "
                "remove it or give another path"
            )
        os.unlink(link_path)
    try:
        os.symlink(target, link_path)
    except FileExistsError:
        raise EmulatorError(
            f"--pty {link_path!r}: the path appeared meanwhile; remove it or give another path"
        ) from None
    except OSError as exc:
        raise EmulatorError(f"--pty {link_path!r}: cannot make the link: {exc.strerror}") from exc


def _remove_link(link_path: str, target: str) -> None:
    """Remove ``link_path`` if it is still the link to ``target`` this process made."""
    try:
        if os.path.islink(link_path) and os.readlink(link_path) == target:
            os.unlink(link_path)
    except OSError:
        pass


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
    made: list[tuple[str, str]] = []
    links: list[tuple[Link, socket.socket]] = []
    try:
        opts = parse_options(raw)
        profile = load_profile(args.profile, opts.profiles)
        unconfined = sandbox.unavailable_line()
        if unconfined is not None:
            sys.stderr.write(unconfined + "\n")
        specs = [_parse_tcp(spec) for spec in args.tcp]
        for host, port in specs:
            if unconfined is not None and not _is_loopback(host, port):
                raise EmulatorError(
                    f"--tcp {host}:{port}: refusing to serve an unconfined board beyond this "
                    "machine (use a loopback address)"
                )
        for link_path in args.pty:
            board = PtyBoard(args.profile, **raw)
            boards.append(board)
            _make_link(link_path, board.path)
            made.append((link_path, board.path))
            sys.stderr.write(f"{profile.name} board on {board.path} (link {link_path})\n")
        for host, port in specs:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            srv = socket.create_server((host, port), family=family)
            link = Link(profile, opts)
            link.start()
            links.append((link, srv))
            shown = f"[{host}]" if ":" in host else host
            sys.stderr.write(f"{profile.name} board on tcp://{shown}:{srv.getsockname()[1]}\n")
    except (EmulatorError, OSError) as exc:
        for b in boards:
            b.close()
        for link, srv in links:
            link.close()
            srv.close()
        for link_path, target in made:
            _remove_link(link_path, target)
        sys.stderr.write(f"error: {exc}\n")
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    clients: dict[int, socket.socket] = {}
    try:
        while True:
            r, _, _ = select.select([s for _, s in links], [], [])
            for link, srv in links:
                if srv not in r:
                    continue
                try:
                    conn, _addr = srv.accept()
                except OSError:
                    continue
                old = clients.get(id(link))
                if old is not None and link.attached and not _gone(old):
                    # one client at a time: the second is told so and let go (as ser2net)
                    try:
                        conn.sendall(BUSY_LINE)
                    except OSError:
                        pass
                    conn.close()
                    continue
                if old is not None:
                    link.detach()
                    old.close()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                clients[id(link)] = conn
                link.attach(conn.fileno())
    except KeyboardInterrupt:
        return 0
    finally:
        for b in boards:
            b.close()
        for link, srv in links:
            link.close()
            srv.close()
        for conn in clients.values():
            conn.close()
        for link_path, target in made:
            _remove_link(link_path, target)


if __name__ == "__main__":
    sys.exit(main())
