"""The database settings each kind of process gets from the environment: the connection pool
in ASGI web processes, persistent connections elsewhere, nothing of either on SQLite."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = "postgres://fillmore@db.invalid:5432/fillmore"
DB_VARIABLES = (
    "DATABASE_URL",
    "DB_POOL",
    "DB_POOL_MIN_SIZE",
    "DB_POOL_MAX_SIZE",
    "DB_POOL_TIMEOUT",
    "DB_APPLICATION_NAME",
    "CONN_MAX_AGE",
    "DB_SERVER_SIDE_BINDING",
    "DB_PREPARED_STATEMENTS",
)


# Every PostgreSQL process binds values server-side, and psycopg prepares a statement a
# connection has run 5 times (named: Django turns preparing off unless OPTIONS says).
BINDING = {"server_side_binding": True, "prepare_threshold": 5}


def database_settings(monkeypatch, tmp_path, **environment: str) -> dict:
    """DATABASES["default"] as a fresh evaluation of tradingsite/settings.py sees it, with only
    `environment` set among the database variables. Touches no database."""
    for name in DB_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FILLMORE_VAR_DIR", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "tradingsite._settings_under_test", ROOT / "tradingsite" / "settings.py"
    )
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "tradingsite"
    spec.loader.exec_module(module)
    return module.DATABASES["default"]


def test_processes_other_than_the_web_keep_a_persistent_connection(monkeypatch, tmp_path):
    # when a worker, beat or market data process reads the settings
    db = database_settings(monkeypatch, tmp_path, DATABASE_URL=POSTGRES_URL)
    # then it has no pool and keeps its connection 60 s
    assert "pool" not in db["OPTIONS"]
    assert db["CONN_MAX_AGE"] == 60
    assert db["OPTIONS"]["application_name"] == "fillmore"


def test_values_are_bound_server_side_and_statements_prepared_by_default(monkeypatch, tmp_path):
    db = database_settings(monkeypatch, tmp_path, DATABASE_URL=POSTGRES_URL)["OPTIONS"]
    assert db["server_side_binding"] is True
    assert db["prepare_threshold"] == 5


def test_binding_and_prepared_statements_follow_the_environment(monkeypatch, tmp_path):
    off = {"DB_SERVER_SIDE_BINDING": "false", "DB_PREPARED_STATEMENTS": "false"}
    db = database_settings(monkeypatch, tmp_path, DATABASE_URL=POSTGRES_URL, **off)["OPTIONS"]
    assert db["server_side_binding"] is False
    assert db["prepare_threshold"] is None  # for a pooler that loses them


def test_the_pool_takes_its_sizes_from_the_environment(monkeypatch, tmp_path):
    # when
    db = database_settings(
        monkeypatch,
        tmp_path,
        DATABASE_URL=POSTGRES_URL,
        DB_POOL="1",
        DB_POOL_MIN_SIZE="2",
        DB_POOL_MAX_SIZE="5",
        DB_POOL_TIMEOUT="0.5",
        DB_APPLICATION_NAME="fillmore-web-2",
    )
    # then
    assert db["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 5, "timeout": 0.5}
    assert db["OPTIONS"]["application_name"] == "fillmore-web-2"


def test_the_pool_overrides_a_conn_max_age_meant_for_other_processes(monkeypatch, tmp_path):
    # when one environment sets CONN_MAX_AGE for everyone and the pool for this process
    db = database_settings(
        monkeypatch, tmp_path, DATABASE_URL=POSTGRES_URL, DB_POOL="1", CONN_MAX_AGE="60"
    )
    # then this process returns its connection to the pool after each request
    # (Django refuses a pool with persistent connections)
    assert db["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 8, "timeout": 10.0}
    assert db["CONN_MAX_AGE"] == 0


@pytest.mark.parametrize(
    "sizes",
    [
        {"DB_POOL_MIN_SIZE": "4", "DB_POOL_MAX_SIZE": "3"},
        {"DB_POOL_MIN_SIZE": "0", "DB_POOL_MAX_SIZE": "0"},
        {"DB_POOL_TIMEOUT": "0"},
    ],
)
def test_impossible_pool_settings_stop_the_process(monkeypatch, tmp_path, sizes):
    with pytest.raises(ImproperlyConfigured):
        database_settings(monkeypatch, tmp_path, DATABASE_URL=POSTGRES_URL, DB_POOL="1", **sizes)


def test_sqlite_never_gets_a_pool(monkeypatch, tmp_path):
    # when
    db = database_settings(
        monkeypatch, tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}", DB_POOL="1"
    )
    # then
    assert "pool" not in db["OPTIONS"]
    assert "application_name" not in db["OPTIONS"]
    assert "server_side_binding" not in db["OPTIONS"]
    assert "CONN_MAX_AGE" not in db


def web_process_database_settings(**environment: str) -> dict:
    """DATABASES["default"] of a process that loads tradingsite.asgi (a fresh interpreter:
    asgi.py sets its defaults before the settings are read). Touches no database."""
    env = {k: v for k, v in os.environ.items() if k not in DB_VARIABLES}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.update(DATABASE_URL=POSTGRES_URL, **environment)
    script = (
        "import json, tradingsite.asgi\n"
        "from django.conf import settings\n"
        "db = settings.DATABASES['default']\n"
        "print(json.dumps({'CONN_MAX_AGE': db['CONN_MAX_AGE'], 'OPTIONS': db['OPTIONS']}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_asgi_web_process_borrows_from_the_pool_by_default():
    db = web_process_database_settings()
    assert db == {
        "CONN_MAX_AGE": 0,
        "OPTIONS": {
            "application_name": "fillmore-web",
            "pool": {"min_size": 1, "max_size": 8, "timeout": 10.0},
            **BINDING,
        },
    }


def test_an_asgi_web_process_without_the_pool_closes_its_connection_per_request():
    db = web_process_database_settings(DB_POOL="0")
    assert db == {
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"application_name": "fillmore-web", **BINDING},
    }
