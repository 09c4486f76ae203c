"""The stack `make bench` drives: PostgreSQL + Redis, gunicorn, Celery prefork, beat and
market data, with the settings a production deploy would use.

- Database: a fresh `fillmore_bench` (dropped first) on postgres://postgres@127.0.0.1:5432.
- Redis: 127.0.0.1:6379 db 7 (cache, rate limits), db 8 the Celery broker; both flushed first.
- web: gunicorn as production runs it (tradingsite/gunicorn_conf.py: WSGI, 2 threaded workers
  x 4 threads, one persistent connection per thread);
  worker: Celery prefork -c 2 on orders,housekeeping,default; beat (DatabaseScheduler);
  marketdata (manage.py run_market_data).

Each process leads its own process group and logs to bench/logs/<name>.log. `stop()` sends
SIGTERM, waits, then SIGKILLs what is left of each group; the databases stay for inspection.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / "bench"
LOG_DIR = BENCH_DIR / "logs"
MANAGE = str(REPO / "manage.py")

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
DB_NAME = "fillmore_bench"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_DB, BROKER_DB = 7, 8
STOP_GRACE_SECONDS = 10.0

# Orders a bench client may not hold (resting, in flight): the statuses of orders.states.OPEN.
OPEN_STATUSES = (
    "created",
    "validated",
    "pending_submit",
    "submitted",
    "acknowledged",
    "partially_filled",
    "pending_cancel",
)


class StackError(Exception):
    """The stack could not be set up or did not come up."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_connect(dbname: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(f"{PG_SERVER}/{dbname}", autocommit=autocommit, connect_timeout=5)


def recreate_database(name: str) -> None:
    with pg_connect("postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def server_versions() -> dict[str, str]:
    versions = {}
    try:
        with pg_connect("postgres") as conn:
            versions["postgres"] = conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error as exc:
        versions["postgres"] = f"unavailable: {exc}"
    try:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2)
        versions["redis"] = client.info("server")["redis_version"]
        client.close()
    except redis.RedisError as exc:
        versions["redis"] = f"unavailable: {exc}"
    return versions


@dataclass
class Proc:
    name: str
    argv: list[str]
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)  # this process only

    def start(self, env: dict[str, str], cwd: Path = REPO) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.name}.log"
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=cwd,
                env={**env, **self.extra_env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,  # Ctrl-C reaches only the harness, which stops us in order
            )
        finally:
            log.close()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_all(procs: list[Proc], grace: float = STOP_GRACE_SECONDS) -> None:
    """TERM to each leader (a gunicorn master or Celery worker stops its own children), then
    KILL whatever is left in each process group."""
    for proc in procs:
        if proc.running():
            try:
                proc.proc.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace
    while any(p.running() for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for proc in procs:
        if proc.running():
            proc.signal_group(signal.SIGKILL)
    for proc in procs:
        if proc.proc is not None:
            try:
                proc.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            proc.signal_group(signal.SIGKILL)  # pool processes orphaned by a crash


class AutovacuumStandIn:
    """Autovacuum's default policy, applied to the bench database by a thread, on a server that
    runs without autovacuum (this machine kind's PostgreSQL has `autovacuum = off`).

    A production PostgreSQL vacuums and analyzes a table once enough of its rows changed. The
    order path updates every order three to four times, so without vacuum the dead versions
    pile up: after one full bench run, orders_order held 223,000 dead row versions for 110,000
    live ones, and the claim's scan of the `validated` entries (dead, not yet removed) took
    4-6 ms instead of a few microseconds, slower every run. Every `every` seconds this thread
    vacuums (and analyzes) each table past autovacuum's default thresholds (dead rows >
    50 + 20 % of live rows; analyze: changes since the last one > 50 + 10 %), as the server's
    own launcher would, and throttled as autovacuum is (`vacuum_cost_delay` 2 ms per
    `vacuum_cost_limit` 200, autovacuum's defaults; a plain VACUUM is not throttled, and until
    2026-12-04 the stand-in's ran flat out beside the order path). Its CPU is spent during the
    phases, as autovacuum's is. It looks more often than autovacuum's launcher, which visits a
    database once a minute (`autovacuum_naptime`): looking every 60 s made no consistent
    difference to the order path's p99 (docs/performance.md, 2026-12-05 afternoon)."""

    def __init__(self, dbname: str, every: float = 15.0) -> None:
        self.dbname = dbname
        self.every = every
        self.vacuums: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def server_runs_autovacuum() -> bool:
        with pg_connect("postgres") as conn:
            return conn.execute("SHOW autovacuum").fetchone()[0] == "on"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="autovacuum-stand-in", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.pass_once()
            except psycopg.Error:
                continue  # the database is busy being dropped or restarted: next time

    def pass_once(self) -> list[str]:
        """Vacuum the tables past the thresholds now; answers their names."""
        done = []
        with pg_connect(self.dbname) as conn:
            conn.execute("SET vacuum_cost_delay = '2ms'")
            conn.execute("SET vacuum_cost_limit = 200")
            rows = conn.execute(
                "SELECT relname, n_live_tup, n_dead_tup, n_mod_since_analyze"
                " FROM pg_stat_user_tables"
            ).fetchall()
            for table, live, dead, changed in rows:
                vacuum = dead > 50 + 0.2 * live
                if vacuum or changed > 50 + 0.1 * live:
                    command = "VACUUM (ANALYZE) {}" if vacuum else "ANALYZE {}"
                    conn.execute(sql.SQL(command).format(sql.Identifier(table)))
                    self.vacuums[table] = self.vacuums.get(table, 0) + 1
                    done.append(table)
        return done


@dataclass
class Stack:
    traders: int
    port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # None: the project's defaults (workers keep connections 60 s; ASGI web uses the pool).
    conn_max_age: int | None = None
    # Set while the stack runs on a server without autovacuum (AutovacuumStandIn).
    autovacuum: AutovacuumStandIn | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"{PG_SERVER}/{DB_NAME}"

    def settings_summary(self) -> dict[str, str]:
        return {
            "web": "gunicorn -c python:tradingsite.gunicorn_conf (WSGI, gthread -w 2 --threads 4)",
            "worker": "celery worker -P prefork -c 2 -Q orders,housekeeping,default",
            "beat": "celery beat (DatabaseScheduler)",
            "marketdata": "manage.py run_market_data",
            "database": self.database_url,
            "redis": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB} (broker db {BROKER_DB})",
            "DEBUG": self.env.get("DEBUG", ""),
            "CONN_MAX_AGE": self.env.get(
                "CONN_MAX_AGE", "default (60: one persistent connection per web thread and worker)"
            ),
            "web_db_pool": ", ".join(f"{k}={v}" for k, v in self.web_env().items()),
            "RISK_ORDERS_PER_MINUTE": self.env.get("RISK_ORDERS_PER_MINUTE", ""),
            "risk_limits": "none configured",
            "autovacuum": (
                "the server's own"
                if self.autovacuum is None
                else "off on the server: the bench's stand-in applied its default policy"
                " (tests/bench/stack.py, AutovacuumStandIn), passes per table: "
                + (
                    ", ".join(f"{t} {n}" for t, n in sorted(self.autovacuum.vacuums.items()))
                    or "none"
                )
            ),
        }

    # --- setup -----------------------------------------------------------------------------

    def make_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "SIM_LATENCY_MS"):
            env.pop(name, None)
        env.update(
            DJANGO_SETTINGS_MODULE="tradingsite.settings",
            DATABASE_URL=self.database_url,
            REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
            CELERY_BROKER_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/{BROKER_DB}",
            DEBUG="false",
            SECRET_KEY=secrets.token_urlsafe(50),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            LOG_LEVEL="WARNING",
            # The per-trader rate limit (100/min by default) would refuse a throughput run:
            # the check still runs on every order, it just never trips.
            RISK_ORDERS_PER_MINUTE="1000000000",
            PYTHONUNBUFFERED="1",
        )
        if self.conn_max_age is not None:
            env["CONN_MAX_AGE"] = str(self.conn_max_age)
        else:
            env.pop("CONN_MAX_AGE", None)
        return env

    def prepare(self) -> None:
        """Fresh database and Redis, migrations, seed data and the bench traders."""
        self.env = self.make_env()
        try:
            recreate_database(DB_NAME)
        except psycopg.Error as exc:
            raise StackError(f"PostgreSQL at {PG_SERVER}: {exc}") from exc
        try:
            for db in (REDIS_DB, BROKER_DB):
                client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db, socket_timeout=5)
                client.flushdb()
                client.close()
        except redis.RedisError as exc:
            raise StackError(f"Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}") from exc
        self.manage("migrate", "--noinput")
        self.manage("setup_periodic_tasks")
        self.manage("seed_demo")
        self.tokens = self.create_traders(self.traders)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, MANAGE, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise StackError(
                f"manage.py {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result.stdout

    def create_traders(self, count: int) -> list[str]:
        """`manage.py create_trader benchNNN --account BENCH-NNN` for each trader, in one
        process (one Django start-up instead of `count`). Answers the tokens in order."""
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "tokens.json"
            script = (
                "import io, json\n"
                "from django.core.management import call_command\n"
                "tokens = []\n"
                f"for i in range({count}):\n"
                "    buf = io.StringIO()\n"
                "    call_command('create_trader', f'bench{i:03d}', account=f'BENCH-{i:03d}',"
                " stdout=buf, stderr=io.StringIO())\n"
                "    tokens.append(buf.getvalue().strip())\n"
                f"open({str(out)!r}, 'w').write(json.dumps(tokens))\n"
            )
            self.manage("shell", "-c", script)
            tokens = json.loads(out.read_text())
        if len(tokens) != count or not all(tokens):
            raise StackError(f"create_trader gave {len(tokens)} tokens for {count} traders")
        return tokens

    # --- processes -------------------------------------------------------------------------

    def web_env(self) -> dict[str, str]:
        """The web processes run as production runs them (tradingsite/gunicorn_conf.py):
        threaded WSGI workers, one persistent connection per thread."""
        return {"DB_APPLICATION_NAME": "fillmore-web", "WEB_WORKERS": "2", "WEB_THREADS": "4"}

    def commands(self) -> list[Proc]:
        py = sys.executable
        return [
            Proc("web", [py, "-m", "gunicorn", "-c", "python:tradingsite.gunicorn_conf",
                         "-b", f"127.0.0.1:{self.port}", "tradingsite.wsgi:application"],
                 extra_env=self.web_env()),
            Proc("worker", [py, "-m", "celery", "-A", "tradingsite", "worker",
                            "-Q", "orders,housekeeping,default", "-P", "prefork", "-c", "2",
                            "-l", "warning"]),
            Proc("beat", [py, "-m", "celery", "-A", "tradingsite", "beat", "-l", "warning",
                          "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler",
                          "--pidfile="]),
            Proc("marketdata", [py, MANAGE, "run_market_data"]),
        ]  # fmt: skip

    def start(self, timeout: float = 90.0) -> None:
        if not AutovacuumStandIn.server_runs_autovacuum():
            self.autovacuum = AutovacuumStandIn(DB_NAME)
            self.autovacuum.start()
        self.procs = self.commands()
        for proc in self.procs:
            proc.start(self.env)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            dead = [p for p in self.procs if not p.running()]
            if dead:
                proc = dead[0]
                raise StackError(
                    f"{proc.name} exited ({proc.proc.returncode}) while starting:\n"
                    f"{proc.log_tail()}"
                )
            try:
                # /readyz: database, Redis and at least one Celery worker answer.
                response = httpx.get(f"{self.base_url}/readyz", timeout=3)
                if response.status_code == 200:
                    return
                last = response.text[:300]
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.5)
        raise StackError(f"the stack was not ready within {timeout:.0f} s ({last})")

    def check_alive(self) -> list[str]:
        return [f"{p.name} exited with {p.proc.returncode}" for p in self.procs if not p.running()]

    def stop(self) -> None:
        # web first (no new orders), then the producers of work, then the worker.
        order = {"web": 0, "marketdata": 1, "beat": 2, "worker": 3}
        stop_all(sorted(self.procs, key=lambda p: order.get(p.name, 9)))
        if self.autovacuum is not None:
            self.autovacuum.stop()

    # --- inspection ------------------------------------------------------------------------

    def redis_queue_lengths(self) -> dict[str, int]:
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=BROKER_DB, socket_timeout=2)
        try:
            return {q: int(client.llen(q)) for q in ("orders", "housekeeping", "default")}
        finally:
            client.close()

    def log_problems(self) -> dict[str, dict[str, int | list[str]]]:
        """Error lines per process log: count and the first few distinct ones."""
        found: dict[str, dict[str, int | list[str]]] = {}
        for proc in self.procs:
            if proc.log_path is None or not proc.log_path.exists():
                continue
            lines = proc.log_path.read_text(errors="replace").splitlines()
            bad = [
                line
                for line in lines
                if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "Exception"))
            ]
            if bad:
                distinct: list[str] = []
                for line in bad:
                    short = line[:300]
                    if short not in distinct:
                        distinct.append(short)
                found[proc.name] = {"lines": len(bad), "examples": distinct[:8]}
        return found
