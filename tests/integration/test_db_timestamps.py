"""tradingsite.db.native_timestamps: on a UTC connection, timestamptz values are read by
psycopg's own loader, and read exactly as Django's loader reads them."""

import datetime
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader

from tradingsite import db

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

VALUES = """SELECT v FROM (VALUES
    ('2026-12-04 21:58:50.123456+00'::timestamptz),
    ('2026-12-04 23:30:00.000001+05:30'),
    ('1999-12-31 23:59:59.999999-08'),
    ('0001-01-01 00:00:00+00'),
    ('9999-12-31 23:59:59.999999+00'),
    ('2024-02-29 12:00:00+14'),
    (NULL)
) AS t(v)"""


def _read(sql: str, *, djangos: bool) -> list[datetime.datetime | None]:
    with connection.cursor() as cursor:
        if djangos:
            register_tzloader(connection.timezone, cursor.cursor)
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


def test_a_utc_connection_reads_with_the_native_loader():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)
    assert loader is db.NativeTimestamptzLoader
    # Django's create_cursor would register its own loader again if the zones disagreed.
    assert loader.timezone == connection.timezone


def test_values_equal_djangos_value_for_value_and_zone_for_zone():
    ours, djangos = _read(VALUES, djangos=False), _read(VALUES, djangos=True)
    assert ours == djangos
    assert [v.tzinfo for v in ours if v] == [v.tzinfo for v in djangos if v] == [datetime.UTC] * 6
    assert [v.isoformat() for v in ours if v] == [v.isoformat() for v in djangos if v]


def test_a_model_reads_back_what_it_saved():
    joined = datetime.datetime(2026, 12, 4, 21, 58, 50, 123456, tzinfo=datetime.UTC)
    user = User.objects.create(username="t", date_joined=joined)
    again = User.objects.get(pk=user.pk)
    assert again.date_joined == joined and again.date_joined.tzinfo is datetime.UTC


def test_another_zone_keeps_djangos_loader():
    raw = SimpleNamespace(
        info=SimpleNamespace(parameter_status=lambda name: "Europe/Paris"),
        adapters=SimpleNamespace(register_loader=lambda *a: pytest.fail("registered")),
    )
    utc_elsewhere = SimpleNamespace(vendor="postgresql", timezone=datetime.UTC, connection=raw)
    db.native_timestamps(None, utc_elsewhere)
    paris = SimpleNamespace(
        vendor="postgresql", timezone=datetime.timezone(datetime.timedelta(hours=1)), connection=raw
    )
    db.native_timestamps(None, paris)
    db.native_timestamps(None, SimpleNamespace(vendor="sqlite", timezone=datetime.UTC))
