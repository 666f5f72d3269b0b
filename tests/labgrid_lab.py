"""A labgrid lab on loopback for the tests: a coordinator, an exporter, two boards, places.

- the coordinator listens on 127.0.0.1 only;
- the exporter publishes its resources as 127.0.0.1 and runs ser2net through a shim that
  binds ser2net's RFC 2217 accepter to 127.0.0.1 (labgrid's exporter would listen on
  every interface);
- the boards: the real MicroPython unix port behind a PTY (a ``RawSerialPort``), place
  ``unix``; and an emulated esp32 served by ``python -m pytest_mpsession.emulator --pty``,
  place ``esp32``, which also has a power port (labgrid's ``simplerest`` model) pointing at
  :class:`PowerStandIn`, an HTTP server that records each switch;
- places are made with ``labgrid-client``, as a lab's admin would.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_mpsession.emulator import PtyBoard

SER2NET = shutil.which("ser2net") or (
    "/usr/sbin/ser2net" if os.path.exists("/usr/sbin/ser2net") else None
)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PowerStandIn:
    """An HTTP power switch (labgrid's ``simplerest`` model): records ``(index, value)``."""

    def __init__(self) -> None:
        self.switches: list[tuple[int, int]] = []
        self.changed = threading.Condition()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "relay":
                    with outer.changed:
                        outer.switches.append((int(parts[1]), int(parts[2])))
                        outer.changed.notify_all()
                body = b"1"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[tuple[int, int]]:
        """Block until ``count`` switches were recorded (or the timeout)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.switches) >= count, timeout)
            return list(self.switches)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _read_until(
    proc: subprocess.Popen[str], text: str, timeout: float, what: str
) -> tuple[str, threading.Thread]:
    """Block on the process's output until a line holds ``text`` (a deadline, no sleeps)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    box: dict[str, str] = {}

    found = threading.Event()

    def reader() -> None:
        # reads to the end, so the process never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(seen) < 200:
                seen.append(line)
            if text in line and not found.is_set():
                box["line"] = line
                found.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    found.wait(max(0.0, deadline - time.monotonic()))
    if "line" not in box:
        raise RuntimeError(f"{what} did not say {text!r} in {timeout} s: {''.join(seen)[-2000:]}")
    return box["line"], t


class Lab:
    """The running lab (see the module). ``address`` is what ``LG_COORDINATOR`` takes."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[subprocess.Popen[str]] = []
        self.drains: list[threading.Thread] = []
        self.boards: list[PtyBoard] = []
        self.power = PowerStandIn()
        self.address = f"127.0.0.1:{free_port()}"
        self.env = dict(os.environ, LG_COORDINATOR=self.address, PYTHONUNBUFFERED="1")
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _spawn(self, argv: list[str], **kw: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.tmp,
            start_new_session=True,
            **kw,
        )
        self.procs.append(proc)
        return proc

    def _start(self) -> None:
        coord = self._spawn(
            [str(BIN / "labgrid-coordinator"), "--listen", self.address], env=self.env
        )
        self.drains.append(_read_until(coord, "Coordinator ready", 30, "labgrid-coordinator")[1])
        unix = PtyBoard("unix")
        self.boards.append(unix)
        esp_link = self.tmp / "esp32-link"
        emu = self._spawn(
            [
                sys.executable,
                "-m",
                "pytest_mpsession.emulator",
                "--pty",
                str(esp_link),
                "--profile",
                "esp32",
            ],
            env=self.env,
        )
        self.drains.append(_read_until(emu, "board on", 30, "the emulator")[1])
        esp_dev = os.path.realpath(esp_link)
        shim = self.tmp / "shim"
        shim.mkdir(exist_ok=True)
        ser2net = shim / "ser2net"
        ser2net.write_text(
            f"#!{sys.executable}\n"
            "# labgrid's exporter starts ser2net on every interface: the tests keep it on\n"
            "# loopback (ser2net's accepter takes an address before the port)\n"
            "import os, re, sys\n"
            f"real = {SER2NET!r}\n"
            "args = [re.sub(r',tcp,(\\d+)$', r',tcp,127.0.0.1,\\1', a) for a in sys.argv[1:]]\n"
            "os.execv(real, [real] + args)\n"
        )
        ser2net.chmod(0o755)
        config = self.tmp / "exporter.yaml"
        config.write_text(
            "board-unix:\n"
            "  RawSerialPort:\n"
            f"    port: {unix.path}\n"
            "    speed: 115200\n"
            "board-esp32:\n"
            "  RawSerialPort:\n"
            f"    port: {esp_dev}\n"
            "    speed: 115200\n"
            "  NetworkPowerPort:\n"
            "    model: simplerest\n"
            f"    host: 'http://127.0.0.1:{self.power.port}/relay/{{index}}/{{value}}'\n"
            "    index: 0\n"
        )
        env = dict(self.env, PATH=f"{shim}{os.pathsep}{self.env.get('PATH', '')}")
        exporter = self._spawn(
            [
                str(BIN / "labgrid-exporter"),
                "--name",
                "lab",
                "--hostname",
                "127.0.0.1",
                str(config),
            ],
            env=env,
        )
        self.drains.append(_read_until(exporter, "Exporter ready", 30, "labgrid-exporter")[1])
        self.wait_resources(3)
        for place, group, tags in (
            ("unix", "board-unix", ["kind=unix", "lab=mp"]),
            ("esp32", "board-esp32", ["kind=esp32", "lab=mp"]),
        ):
            self.client("-p", place, "create")
            self.client("-p", place, "add-match", f"lab/{group}/*")
            self.client("-p", place, "set-tags", *tags)

    def client(self, *args: str) -> str:
        """Run ``labgrid-client`` against this lab; its output."""
        out = subprocess.run(
            [str(BIN / "labgrid-client"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)}: {out.stderr or out.stdout}")
        return out.stdout

    def _session(self, check: Callable[[Any], Any], timeout: float = 30.0) -> Any:
        from pytest_mpsession.farm.labgrid import _Session

        with _Session(self.address, 10.0) as lab:
            return lab.run(lab.wait_until(lambda: check(lab.session), time.monotonic() + timeout))

    def wait_resources(self, count: int) -> None:
        """Block until the exporter's resources are known to the coordinator."""

        def enough(session: Any) -> bool | None:
            n = sum(len(g) for groups in session.resources.values() for g in groups.values())
            return True if n >= count else None

        if self._session(enough) is None:
            raise RuntimeError("the exporter's resources did not reach the coordinator")

    def holders(self) -> dict[str, tuple[str | None, str | None]]:
        """Each place: (who acquired it, its reservation), as the coordinator says now."""

        def read(session: Any) -> dict[str, tuple[str | None, str | None]]:
            return {n: (p.acquired, p.reservation) for n, p in session.places.items()}

        result: dict[str, tuple[str | None, str | None]] = self._session(read)
        return result

    def wait_free(self, timeout: float = 30.0) -> dict[str, tuple[str | None, str | None]]:
        """Block until no place is acquired or reserved (or the timeout); the holders."""

        def free(session: Any) -> dict[str, tuple[str | None, str | None]] | None:
            state = {n: (p.acquired, p.reservation) for n, p in session.places.items()}
            return state if all(v == (None, None) for v in state.values()) else None

        result = self._session(free, timeout)
        return result if result is not None else self.holders()

    def close(self) -> None:
        import signal

        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for drain in self.drains:
            drain.join(10)
        for proc in self.procs:
            if proc.stdout is not None:
                proc.stdout.close()
        for board in self.boards:
            board.close()
        self.power.close()
