"""tradingsite.fastinit builds the same instances as Model.__init__ and Model.from_db."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import models
from django.db.models.signals import pre_init
from django.test import override_settings

from brokers.models import SimOrder, SimQuote, SimReport
from orders.models import (
    Account,
    Fill,
    Instrument,
    Order,
    OrderEvent,
    OutboxMessage,
    Position,
)
from tradingsite import fastinit

D = Decimal
NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HOT = [Instrument, Account, Order, Fill, OrderEvent, OutboxMessage, Position, SimQuote, SimOrder,
       SimReport]  # fmt: skip


def django_built(model, **kwargs):
    """The instance Model.__init__ builds."""
    obj = model.__new__(model)
    models.Model.__init__(obj, **kwargs)
    return obj


def contents(obj):
    """Everything an instance holds: its attributes, and its state (db, adding, the related
    objects cached on it)."""
    attributes = dict(obj.__dict__)
    state = attributes.pop("_state")
    cached = dict(state.__dict__.get("fields_cache", {}))
    return attributes, (state.adding, state.db, cached)


def without(attributes, *names):
    return {k: v for k, v in attributes.items() if k not in names}


@pytest.fixture
def related():
    account = Account(id=7, code="ACC-7", currency="USD")
    instrument = Instrument(id=3, symbol="EUR_USD", asset_class="fx", quote_currency="USD")
    return account, instrument


def test_every_hot_model_has_a_plan():
    assert all(fastinit._plan(model) is not None for model in HOT)


def test_an_event_with_its_order_is_built_as_django_builds_it(related):
    account, instrument = related
    order = Order(account=account, instrument=instrument, client_order_id="c", side="buy",
                  type="market", time_in_force="ioc", quantity=D(1), remaining_quantity=D(1),
                  venue="sim", created_at=NOW, updated_at=NOW)  # fmt: skip
    fields = {"order": order, "seq": 3, "type": "validated", "at": NOW, "actor": "a",
              "correlation_id": "k", "data": {"changes": {"status": "validated"}}}  # fmt: skip
    assert contents(OrderEvent(**fields)) == contents(django_built(OrderEvent, **fields))


def test_an_order_with_related_instances_and_defaults(related):
    account, instrument = related
    fields = {"id": uuid.uuid4(), "account": account, "instrument": instrument,
              "client_order_id": "c", "side": "buy", "type": "limit", "time_in_force": "gtc",
              "quantity": D(10), "limit_price": D("1.08"), "remaining_quantity": D(10),
              "venue": "sim", "created_by": None, "created_at": NOW, "updated_at": NOW,
              "metadata": {"a": 1}}  # fmt: skip
    fast, django = contents(Order(**fields)), contents(django_built(Order, **fields))
    assert fast == django
    assert fast[0]["account_id"] == 7 and fast[1][2]["account"] is account


def test_defaults_are_fresh_for_each_instance(related):
    # callable defaults (a new uuid, now, a new dict) are called for each instance
    account, instrument = related
    fields = {"account": account, "instrument": instrument, "side": "buy", "quantity": D(1),
              "price": D(1), "liquidity": "taker", "venue": "sim", "venue_execution_id": "x",
              "executed_at": NOW}  # fmt: skip
    first, second = Fill(**fields), Fill(**fields)
    django = django_built(Fill, **fields)
    assert first.id != second.id and isinstance(first.id, uuid.UUID)
    assert set(contents(first)[0]) == set(contents(django)[0])
    assert without(contents(first)[0], "id", "created_at", "order_id") == without(
        contents(django)[0], "id", "created_at", "order_id"
    )
    assert first.order_id is None and first.commission == D(0)
    a, b = OutboxMessage(task="t"), OutboxMessage(task="t")
    assert a.kwargs == {} and a.kwargs is not b.kwargs


def test_now_as_a_default_is_utc_now_and_follows_use_tz():
    before = datetime.now(UTC)
    report = SimReport(kind="new")
    assert before <= report.at <= datetime.now(UTC) and report.at.tzinfo is UTC
    assert report.at.tzinfo == django_built(SimReport, kind="new").at.tzinfo
    with override_settings(USE_TZ=False):
        assert SimReport(kind="new").at.tzinfo is None  # as Django's timezone.now answers
    assert SimReport(kind="new").at.tzinfo is UTC


def test_keys_by_id_and_properties(related):
    fields = {"account_id": 7, "instrument_id": 3, "strategy_id": "s", "quantity": D(5),
              "updated_at": NOW, "pk": 42}  # fmt: skip
    fast = Position(**fields)
    assert contents(fast) == contents(django_built(Position, **fields))
    assert fast.pk == 42 and fast.account_id == 7


def test_rows_read_back_as_django_reads_them():
    names = [f.attname for f in SimQuote._meta.concrete_fields]
    values = [1, "EUR_USD", 9, D("1.1"), D("1.2"), D(5), D(6), D(5), D(6), NOW]
    fast = SimQuote.from_db("default", names, values)
    django = models.Model.from_db.__func__(SimQuote, "default", names, values)
    assert contents(fast) == contents(django)
    assert fast._state.adding is False and fast._state.db == "default"


def test_a_row_with_deferred_fields_takes_djangos_path():
    fast = SimQuote.from_db("default", ["id", "symbol"], [1, "EUR_USD"])
    assert fast.get_deferred_fields() == {
        f.attname for f in SimQuote._meta.concrete_fields if f.attname not in ("id", "symbol")
    }


def test_mistakes_are_refused_as_django_refuses_them(related):
    account, _ = related
    with pytest.raises(ValueError, match='must be a "Instrument" instance'):
        Order(instrument=account)
    with pytest.raises(TypeError, match="unexpected keyword arguments: 'colour'"):
        Order(colour="red")


def test_an_init_signal_receiver_gets_djangos_path():
    heard = []

    def receiver(sender, **kwargs):
        heard.append(sender)

    pre_init.connect(receiver)
    try:
        OutboxMessage(task="t")
        SimQuote.from_db("default", [f.attname for f in SimQuote._meta.concrete_fields],
                         [1, "X", 0, D(1), D(1), D(1), D(1), D(1), D(1), NOW])  # fmt: skip
    finally:
        pre_init.disconnect(receiver)
    assert heard == [OutboxMessage, SimQuote]
