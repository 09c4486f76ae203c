"""The connection's health check (tradingsite/postgres/base.py): a kept connection whose
socket is quiet is used without a `SELECT 1` first; one the server has ended is replaced
before the statement, also when that statement opens a transaction (a submit task's claim);
anything else waiting on the socket gets Django's own ping. And statements are prepared."""

import time
from unittest import mock

import psycopg
import pytest
from django.db import connection, transaction

from tradingsite import db

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _check_due() -> None:
    """As at the start of a request or task (close_old_connections): a kept connection is
    checked at its next use."""
    connection.ensure_connection()
    connection.health_check_done = False


def _other() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    return psycopg.connect(**params, autocommit=True)


def _terminate(pid: int) -> None:
    with _other() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        # the backend is gone once pg_stat_activity no longer lists it
        for _ in range(100):
            if not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchall():
                return
            time.sleep(0.02)


def _no_ping():
    return mock.patch.object(connection, "is_usable", side_effect=AssertionError("pinged"))


def test_the_backend_is_ours():
    assert connection.settings_dict["ENGINE"] == "tradingsite.postgres"
    assert connection.vendor == "postgresql"


def test_a_quiet_connection_is_not_pinged():
    _check_due()
    with _no_ping():
        assert db.read("SELECT %s::int", [7]) == [(7,)]
    assert connection.health_check_done


def test_a_quiet_connection_is_not_pinged_before_a_transaction():
    _check_due()
    with _no_ping(), transaction.atomic():
        assert db.read("SELECT 7") == [(7,)]
    assert connection.health_check_done


def test_a_connection_the_server_ended_is_replaced_before_the_statement():
    _check_due()
    pid = connection.connection.info.backend_pid
    _terminate(pid)
    assert db.read("SELECT 7") == [(7,)]
    assert connection.connection.info.backend_pid != pid


def test_one_ended_before_a_transaction_is_replaced_before_its_begin():
    """A submit task's first statement is its claim, inside a transaction: the transaction
    opens on the new connection, not on the dead one."""
    _check_due()
    pid = connection.connection.info.backend_pid
    _terminate(pid)
    with transaction.atomic():
        assert db.read("SELECT pg_backend_pid()") != [(pid,)]
    assert connection.connection.info.backend_pid != pid


def test_something_waiting_on_the_socket_gets_the_ping_and_the_connection_stays():
    """A notification arrived while the connection sat idle: not quiet, so Django pings
    (which reads it), and the connection, alive, is kept."""
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("LISTEN fillmore_health_probe")
    pid = connection.connection.info.backend_pid
    with _other() as other:
        other.execute("NOTIFY fillmore_health_probe")
    time.sleep(0.05)
    connection.health_check_done = False
    with mock.patch.object(connection, "is_usable", wraps=connection.is_usable) as ping:
        assert db.read("SELECT 7") == [(7,)]
    assert ping.call_count == 1
    assert connection.connection.info.backend_pid == pid
    with connection.cursor() as cursor:
        cursor.execute("UNLISTEN *")


def test_a_checked_connection_is_not_looked_at_again_until_the_next_request():
    _check_due()
    db.read("SELECT 1")
    with mock.patch("tradingsite.postgres.base.quiet", side_effect=AssertionError("looked")):
        assert db.read("SELECT 7") == [(7,)]


def test_an_order_request_after_postgresql_dropped_the_web_connection(api):
    """Between two requests the backend is terminated: the next request reconnects before its
    first statement and succeeds."""
    from tests.helpers import LIMIT_ORDER

    first = api.post("/api/v1/orders/", {**LIMIT_ORDER, "client_order_id": "a"}, format="json")
    assert first.status_code == 201
    _terminate(connection.connection.info.backend_pid)
    # (Django's test client does not send request_started's close_old_connections: as it would)
    connection.health_check_done = False
    second = api.post("/api/v1/orders/", {**LIMIT_ORDER, "client_order_id": "b"}, format="json")
    assert second.status_code == 201, second.content


def test_a_statement_run_five_times_is_prepared_and_then_runs_as_prepared(settings):
    """Django turns psycopg's preparing off unless OPTIONS names a threshold
    (tradingsite/settings.py names psycopg's own, 5): the live connection prepares."""
    assert settings.DATABASES["default"]["OPTIONS"]["prepare_threshold"] == 5
    connection.ensure_connection()
    assert connection.connection.prepare_threshold == 5
    statement = "SELECT %s::int + 41 AS prepared_probe"
    for value in range(6):
        assert db.read(statement, [value]) == [(value + 41,)]
    prepared = db.read(
        "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
        ["%prepared_probe%"],
    )
    assert len(prepared) == 1
