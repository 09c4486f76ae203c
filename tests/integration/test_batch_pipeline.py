"""The batch intake publishes one worker task per many orders, and those orders fill."""

import pytest

from brokers.models import SimOrder
from orders import outbox, services
from orders.models import Order, OutboxMessage
from tests.helpers import eur_usd_market
from tests.workers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def batch_of(count, prefix="b"):
    return {
        "orders": [
            {
                "account": "ACC-1",
                "client_order_id": f"{prefix}-{n}",
                "symbol": "EUR_USD",
                "side": "buy",
                "type": "market",
                "quantity": "1000",
            }
            for n in range(count)
        ]
    }


def test_a_batch_of_120_is_sent_as_three_tasks(api, instruments, monkeypatch, settings):
    settings.RISK_ORDERS_PER_MINUTE = 1000
    monkeypatch.setattr(services, "SUBMIT_BATCH_SIZE", 50)  # (200 in production)
    sent = []
    monkeypatch.setattr(
        outbox, "_send", lambda task, kwargs, producer=None: sent.append((task, kwargs))
    )
    response = api.post("/api/v1/orders/batch/", batch_of(120), format="json")
    assert [r["status"] for r in response.json()["results"]] == [201] * 120
    assert [(task, len(kwargs["order_ids"])) for task, kwargs in sent] == [
        ("orders.submit_batch", 50),
        ("orders.submit_batch", 50),
        ("orders.submit_batch", 20),
    ]
    # (the relay marks the rows: they were sent, so it publishes nothing again)
    assert outbox.relay(older_than_seconds=0) == 0
    assert OutboxMessage.objects.filter(published_at__isnull=True).count() == 0
    ids = [order_id for _, kwargs in sent for order_id in kwargs["order_ids"]]
    assert sorted(ids) == sorted(r["order"]["id"] for r in response.json()["results"])


@pytest.mark.worker
def test_batched_orders_fill_once_each(api, instruments, celery_worker):
    eur_usd_market(size="100000000")
    response = api.post("/api/v1/orders/batch/", batch_of(60, "w"), format="json")
    ids = [r["order"]["id"] for r in response.json()["results"]]
    wait_for(
        lambda: Order.objects.filter(pk__in=ids, status="filled").count() == 60,
        message="every batched order to fill",
    )
    assert SimOrder.objects.filter(client_order_id__in=ids).count() == 60
