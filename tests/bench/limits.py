"""The machine's limits, measured in the same run by the scripts of ../shared/limits/.

The scripts are copied to a temporary folder (shared/ stays read-only) and run as their README
says, against the database `lab_bench` (recreated) and Redis databases 5 and 6 (capp.py's):

- pgbench -f ev.sql -c 1: single-row INSERT+COMMIT per second  -> pg_single_insert_tps
- pgbench -f evb.sql -c 2 -j 2: 100 rows per transaction       -> pg_batched_rows_per_s
- Celery no-op tasks, prefork -c 2 worker + cbench.py           -> celery_noop_tasks_per_s
  (and clat.py, 500 sequential tasks: celery_dispatch_p50_ms / p99_ms)
- mini.py (bare DRF view, 2 INSERTs) on gunicorn gthread -w 2 --threads 2, wrk -t1 -c4 with
  post.lua, or, without wrk, 4 httpx connections   -> drf_floor_req_per_s, drf_floor_p50_ms,
  drf_floor_p99_ms
- a Redis PING and a PostgreSQL `SELECT 1`, 1,000 each back to back and 1,000 each after 2 ms
  idle (not a script of ../shared/limits: this project's own): redis_rtt_busy_us,
  redis_rtt_idle_us, pg_rtt_busy_us, pg_rtt_idle_us. What a round trip costs when the machine
  has gone idle in between, as it has between a lone order's steps. On a virtual machine
  whose idle virtual CPUs halt (no halt polling), the wake-up is most of an idle round trip:
  190 against 26 us for a PING on 2026-12-05's machine.

Each figure is None when its tool is missing or fails; `notes` says why.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import redis

from .stack import PG_SERVER, Proc, free_port, pg_connect, recreate_database, stop_all

SHARED_LIMITS = Path(
    os.environ.get(
        "FILLMORE_LIMITS_DIR", str(Path(__file__).resolve().parents[3] / "shared" / "limits")
    )
)
LAB_DB = "lab_bench"
CELERY_DBS = (5, 6)
EV_TABLE = (
    "create table ev(id bigserial primary key, order_id uuid not null, kind text not null, "
    "data jsonb not null, created_at timestamptz not null);"
    "create index on ev(order_id); create index on ev(created_at);"
)
LIMIT_KEYS = (
    "pg_single_insert_tps",
    "pg_batched_rows_per_s",
    "celery_noop_tasks_per_s",
    "drf_floor_req_per_s",
    "drf_floor_p99_ms",
)


def _pg_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PGHOST="127.0.0.1", PGPORT="5432", PGUSER="postgres")
    return env


class Limits:
    def __init__(self, seconds: int, celery_tasks: int, note: Callable[[str], None]) -> None:
        self.seconds = seconds
        self.celery_tasks = celery_tasks
        self.note = note
        self.dir: Path | None = None
        self.procs: list[Proc] = []

    # --- set-up ----------------------------------------------------------------------------

    def prepare(self) -> bool:
        if not SHARED_LIMITS.is_dir():
            self.note(f"limits: {SHARED_LIMITS} not found; machine limits not measured")
            return False
        self.dir = Path(tempfile.mkdtemp(prefix="fillmore-limits-"))
        shutil.copytree(SHARED_LIMITS, self.dir, dirs_exist_ok=True)
        for path in self.dir.iterdir():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        mini = self.dir / "mini.py"
        text = mini.read_text()
        patched = text.replace("'NAME':'lab'", f"'NAME':'{LAB_DB}'").replace(
            "'USER':'root'", "'USER':'postgres'"
        )
        if patched == text:
            self.note("limits: mini.py's DATABASES did not match; it runs unpatched")
        mini.write_text(patched)
        recreate_database(LAB_DB)
        with pg_connect(LAB_DB) as conn:
            conn.execute(EV_TABLE)
        return True

    def cleanup(self) -> None:
        stop_all(self.procs, grace=5)
        self.procs = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # --- pgbench -----------------------------------------------------------------------------

    def _pgbench(self, script: str, clients: int) -> float | None:
        if shutil.which("pgbench") is None:
            self.note("limits: pgbench not installed")
            return None
        argv = ["pgbench", "-n", "-f", script, "-c", str(clients), "-j", str(clients)]
        argv += ["-T", str(self.seconds), LAB_DB]
        result = subprocess.run(
            argv, cwd=self.dir, env=_pg_env(), capture_output=True, text=True, check=False
        )
        match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
        if result.returncode != 0 or match is None:
            self.note(f"limits: {' '.join(argv)} failed: {result.stderr.strip()[-300:]}")
            return None
        return float(match.group(1))

    def pg_single_insert_tps(self) -> float | None:
        return self._pgbench("ev.sql", 1)

    def pg_batched_rows_per_s(self) -> float | None:
        tps = self._pgbench("evb.sql", 2)
        return None if tps is None else tps * 100  # evb.sql: 100 rows per transaction

    # --- Celery ------------------------------------------------------------------------------

    def celery(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {
            "celery_noop_tasks_per_s": None,
            "celery_publish_tasks_per_s": None,
            "celery_dispatch_p50_ms": None,
            "celery_dispatch_p99_ms": None,
        }
        for db in CELERY_DBS:
            client = redis.Redis(host="127.0.0.1", port=6379, db=db, socket_timeout=5)
            client.flushdb()
            client.close()
        env = dict(os.environ, PYTHONPATH=str(self.dir), PYTHONUNBUFFERED="1")
        env.pop("DJANGO_SETTINGS_MODULE", None)
        worker = Proc(
            "limits-celery",
            [sys.executable, "-m", "celery", "-A", "capp", "worker", "-c", "2", "-P", "prefork",
             "-l", "warning"],
        )  # fmt: skip
        worker.start(env, cwd=self.dir)
        self.procs.append(worker)
        try:
            # Warm-up: also waits for the worker to consume.
            self._run([sys.executable, "cbench.py", "200"], env, timeout=120)
            text = self._run(
                [sys.executable, "cbench.py", str(self.celery_tasks)], env, timeout=600
            )
            match = re.search(r"publish (\d+)/s\s+end-to-end (\d+)/s", text or "")
            if match:
                out["celery_publish_tasks_per_s"] = float(match.group(1))
                out["celery_noop_tasks_per_s"] = float(match.group(2))
            else:
                self.note(f"limits: cbench.py printed {text!r}")
            text = self._run([sys.executable, "clat.py"], env, timeout=300)
            match = re.search(r"p50 ([\d.]+) ms p99 ([\d.]+) ms", text or "")
            if match:
                out["celery_dispatch_p50_ms"] = float(match.group(1))
                out["celery_dispatch_p99_ms"] = float(match.group(2))
        finally:
            stop_all([worker], grace=10)
            self.procs.remove(worker)
        return out

    def _run(self, argv: list[str], env: dict[str, str], timeout: float) -> str | None:
        try:
            result = subprocess.run(
                argv, cwd=self.dir, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            self.note(f"limits: {' '.join(argv)} did not finish within {timeout:.0f} s")
            return None
        if result.returncode != 0:
            self.note(f"limits: {' '.join(argv)} failed: {result.stderr.strip()[-300:]}")
            return None
        return result.stdout

    # --- bare DRF floor ----------------------------------------------------------------------

    def drf_floor(self) -> dict[str, float | str | None]:
        out: dict[str, float | str | None] = {
            "drf_floor_req_per_s": None,
            "drf_floor_p50_ms": None,
            "drf_floor_p99_ms": None,
            "drf_floor_tool": None,
        }
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(self.dir), PYTHONUNBUFFERED="1")
        env.pop("DJANGO_SETTINGS_MODULE", None)
        server = Proc(
            "limits-drf",
            [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "gthread", "--threads", "2",
             "-b", f"127.0.0.1:{port}", "mini:application"],
        )  # fmt: skip
        server.start(env, cwd=self.dir)
        self.procs.append(server)
        url = f"http://127.0.0.1:{port}/orders"
        try:
            if not self._wait_up(url, server):
                return out
            self._http_load(url, seconds=1)  # warm-up: connections, imports
            if shutil.which("wrk"):
                out.update(self._wrk(url))
                out["drf_floor_tool"] = "wrk -t1 -c4 -s post.lua"
            else:
                out.update(self._http_load(url, seconds=self.seconds))
                out["drf_floor_tool"] = "httpx, 4 connections (wrk not installed)"
        finally:
            stop_all([server], grace=10)
            self.procs.remove(server)
        return out

    def _wait_up(self, url: str, server: Proc, timeout: float = 30) -> bool:
        body = {"symbol": "EUR_USD", "side": "buy", "quantity": "1000"}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not server.running():
                self.note(f"limits: mini.py under gunicorn exited:\n{server.log_tail()}")
                return False
            try:
                if httpx.post(url, json=body, timeout=3).status_code == 201:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.note(f"limits: mini.py did not answer 201 within {timeout:.0f} s")
        return False

    def _wrk(self, url: str) -> dict[str, float | None]:
        argv = ["wrk", "-t1", "-c4", f"-d{self.seconds}s", "-s", "post.lua", "--latency", url]
        result = subprocess.run(argv, cwd=self.dir, capture_output=True, text=True, check=False)
        text = result.stdout
        rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
        if result.returncode != 0 or rate is None:
            self.note(f"limits: wrk failed: {result.stderr.strip()[-300:]}")
            return {}
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        if errors:
            self.note(f"limits: wrk saw {errors.group(1)} non-2xx answers from mini.py")
        return {
            "drf_floor_req_per_s": float(rate.group(1)),
            "drf_floor_p50_ms": _wrk_latency(text, "50%"),
            "drf_floor_p99_ms": _wrk_latency(text, "99%"),
        }

    def _http_load(self, url: str, seconds: float) -> dict[str, float | None]:
        body = {"symbol": "EUR_USD", "side": "buy", "quantity": "1000"}

        async def one_connection(end: float, samples: list[float]) -> None:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
                while time.perf_counter() < end:
                    started = time.perf_counter()
                    response = await client.post(url, json=body)
                    if response.status_code == 201:
                        samples.append((time.perf_counter() - started) * 1000)

        async def main() -> tuple[list[float], float]:
            samples: list[float] = []
            started = time.perf_counter()
            end = started + seconds
            await asyncio.gather(*(one_connection(end, samples) for _ in range(4)))
            return samples, time.perf_counter() - started

        samples, elapsed = asyncio.run(main())
        samples.sort()
        if not samples:
            return {}
        return {
            "drf_floor_req_per_s": round(len(samples) / elapsed, 1),
            "drf_floor_p50_ms": round(samples[len(samples) // 2], 2),
            "drf_floor_p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 2),
        }

    # --- round trips -------------------------------------------------------------------------

    def round_trips(self, count: int = 1000, idle_s: float = 0.002) -> dict[str, float | None]:
        """p50 of a round trip to Redis and to PostgreSQL, back to back and after `idle_s` of
        idleness, in microseconds."""
        client = redis.Redis(host="127.0.0.1", port=6379, db=CELERY_DBS[0], socket_timeout=5)
        out: dict[str, float | None] = {}
        try:
            with pg_connect(LAB_DB) as conn:
                for name, call in (
                    ("redis", client.ping),
                    ("pg", lambda: conn.execute("SELECT 1").fetchone()),
                ):
                    for mode, pause in (("busy", 0.0), ("idle", idle_s)):
                        out[f"{name}_rtt_{mode}_us"] = _p50_us(call, count, pause)
        except (redis.RedisError, psycopg.Error) as exc:
            self.note(f"limits: round trips: {exc}")
        finally:
            client.close()
        return out

    # --- all ---------------------------------------------------------------------------------

    def measure(self, step: Callable[[str], None]) -> dict[str, float | str | None]:
        figures: dict[str, float | str | None] = dict.fromkeys(LIMIT_KEYS)
        try:
            if not self.prepare():
                return figures
        except (psycopg.Error, OSError) as exc:
            self.note(f"limits: set-up failed ({PG_SERVER}/{LAB_DB}): {exc}")
            return figures
        try:
            step("limits: pgbench single-row inserts")
            figures["pg_single_insert_tps"] = self.pg_single_insert_tps()
            step("limits: pgbench batched inserts")
            figures["pg_batched_rows_per_s"] = self.pg_batched_rows_per_s()
            step("limits: Celery no-op tasks")
            try:
                figures.update(self.celery())
            except redis.RedisError as exc:
                self.note(f"limits: Celery no-op: Redis: {exc}")
            step("limits: bare DRF floor")
            figures.update(self.drf_floor())
            step("limits: round trips, busy and idle")
            figures.update(self.round_trips())
        finally:
            self.cleanup()
        return figures


def _p50_us(call: Callable[[], object], count: int, pause: float) -> float:
    call()  # connected, warm
    samples = []
    for _ in range(count):
        if pause:
            time.sleep(pause)
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return round(samples[len(samples) // 2], 1)


def _wrk_latency(text: str, label: str) -> float | None:
    match = re.search(rf"^\s*{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)
