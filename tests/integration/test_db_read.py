"""tradingsite.db.read: the first read of a request or task is the connection's health check
(no `SELECT 1` round trip before it), and a connection found dead by it is replaced."""

from unittest import mock

import psycopg
import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from tradingsite import db

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _check_due() -> None:
    """As at the start of a request or task (close_old_connections): a kept connection is
    checked at its next use."""
    connection.ensure_connection()
    connection.health_check_done = False


def _terminate(pid: int) -> None:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_the_read_is_the_check_no_ping_before_it():
    _check_due()
    with mock.patch.object(connection, "is_usable", side_effect=AssertionError("pinged")):
        assert db.read("SELECT %s::int", [7]) == [(7,)]
    assert connection.health_check_done


def test_a_dead_connection_is_replaced_and_the_read_made_again():
    _check_due()
    pid = connection.connection.info.backend_pid
    _terminate(pid)
    assert db.read("SELECT 7") == [(7,)]
    assert connection.connection.info.backend_pid != pid


def test_a_failing_statement_on_a_live_connection_is_not_retried():
    _check_due()
    pid = connection.connection.info.backend_pid
    with pytest.raises(ProgrammingError):
        db.read("SELECT no_such_column FROM refdata_version")
    assert connection.connection.info.backend_pid == pid


def test_inside_a_transaction_django_pings_as_usual():
    _check_due()
    with transaction.atomic():
        # the check ran at BEGIN (Django's own): read does not skip or repeat anything
        assert connection.health_check_done
        assert db.read("SELECT 7") == [(7,)]


def test_an_order_request_after_postgresql_dropped_the_web_connection(api):
    """Between two requests the backend is terminated: the next request reconnects at its
    first read (the reference-data version) and succeeds."""
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
