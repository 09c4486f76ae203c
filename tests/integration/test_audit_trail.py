"""OrderEvent is append-only, enforced by PostgreSQL itself."""

from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction

from orders import actors, services
from orders.models import Account, OrderEvent
from tests.helpers import buy_limit_terms

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


@pytest.fixture
def order(instruments, trader):
    terms = buy_limit_terms(Decimal("1.08000"))
    return services.order_submit(
        account=Account.objects.get(code="ACC-1"),
        terms=terms,
        user=trader,
        actor=actors.user_actor(trader),
    ).order


def test_updating_an_event_is_refused_by_the_database(order):
    event = order.events.order_by("seq").first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        OrderEvent.objects.filter(pk=event.pk).update(type="tampered")
    assert OrderEvent.objects.get(pk=event.pk).type == "created"


def test_deleting_an_event_is_refused_even_in_raw_sql(order):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM orders_orderevent")
    assert order.events.count() == 2


def test_inserting_events_still_works(order):
    services.order_cancel(order_id=order.id, actor="user:alice")
    assert [e.type for e in order.events.order_by("seq")] == ["created", "validated", "cancelled"]
