"""Real Celery worker and web processes on the test database, for the end-to-end,
crash and multi-process tests."""

from __future__ import annotations

import os
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
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CONN_MAX_AGE": "0",
            "LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
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
        from tradingsite.celery import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: see {self.log.name}")
            if app.control.ping(destination=[self.name], timeout=0.5):
                return
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
        env = {
            **os.environ,
            "DATABASE_URL": worker_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_LEVEL": "WARNING",
            "DB_APPLICATION_NAME": self.application_name,
            **extra_env,
        }
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
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()
