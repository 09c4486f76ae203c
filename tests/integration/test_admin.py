"""The desk's admin: pages load with every filter, orders are read-only, and the cancel action
goes through orders.services."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from orders.admin import CappedCountPaginator
from orders.models import Account, Fill, Instrument, Order, OrderEvent, OutboxMessage
from orders.services import order_park_for_review, order_submit, order_submit_to_venue
from orders.states import EventType
from orders.validation import OrderTerms

pytestmark = pytest.mark.django_db

D = Decimal
ORDERS_URL = "/admin/orders/order/"
EVENTS_URL = "/admin/orders/orderevent/"


@pytest.fixture(autouse=True)
def no_publish(monkeypatch):
    """Nothing reaches Redis: plain db tests never run on-commit callbacks, and this makes sure."""
    sent: list = []
    monkeypatch.setattr("orders.outbox.publish", lambda messages: sent.extend(messages) or 0)
    return sent


def submit(account: Account, client_order_id: str, symbol: str, **terms) -> Order:
    fields = {"side": "buy", "type": "limit", "time_in_force": "gtc", **terms}
    result = order_submit(
        account=account,
        terms=OrderTerms(symbol=symbol, client_order_id=client_order_id, **fields),
        actor="user:test",
    )
    return result.order


@pytest.fixture
def book(trader, other_trader, instruments):
    """A: validated; B: filled at the sim venue; C: validated and parked for review;
    D: resting (acknowledged) at the sim venue."""
    acc1 = Account.objects.get(code="ACC-1")
    acc2 = Account.objects.get(code="ACC-2")
    a = submit(acc1, "desk-a", "EUR_USD", quantity=D("1000"), limit_price=D("1.08000"))
    b = submit(acc2, "desk-b", "AAPL", type="market", quantity=D("10"))
    order_submit_to_venue(order_id=b.pk)
    c = submit(acc1, "desk-c", "GBP_USD", quantity=D("2000"), limit_price=D("1.26000"))
    order_park_for_review(order_id=c.pk, reason="test")
    d = submit(acc1, "desk-d", "EUR_USD", quantity=D("1000"), limit_price=D("1.00000"))
    order_submit_to_venue(order_id=d.pk)
    orders = {key: Order.objects.get(pk=o.pk) for key, o in zip("abcd", (a, b, c, d), strict=True)}
    assert {k: o.status for k, o in orders.items()} == {
        "a": "validated",
        "b": "filled",
        "c": "validated",
        "d": "acknowledged",
    }
    return orders


def listed(client, **params) -> list[str]:
    response = client.get(ORDERS_URL, params)
    assert response.status_code == 200, response.get("Location")
    return sorted(order.client_order_id for order in response.context["cl"].result_list)


# --- pages -----------------------------------------------------------------------------------


def test_order_changelist_loads_with_each_filter(admin_client, book):
    # given
    eur = Instrument.objects.get(symbol="EUR_USD")
    acc1 = Account.objects.get(code="ACC-1")
    today = timezone.localdate()
    midnight = timezone.make_aware(datetime.combine(today, time()))
    # when / then
    assert listed(admin_client) == ["desk-a", "desk-b", "desk-c", "desk-d"]
    assert listed(admin_client, status__exact="validated") == ["desk-a", "desk-c"]
    assert listed(admin_client, status__exact="filled") == ["desk-b"]
    assert listed(admin_client, instrument__id__exact=eur.pk) == ["desk-a", "desk-d"]
    assert listed(admin_client, account__id__exact=acc1.pk) == ["desk-a", "desk-c", "desk-d"]
    assert listed(admin_client, venue="sim") == ["desk-a", "desk-b", "desk-c", "desk-d"]
    assert listed(admin_client, venue="other") == []
    assert listed(admin_client, needs_review__exact="1") == ["desk-c"]
    assert listed(admin_client, needs_review__exact="0") == ["desk-a", "desk-b", "desk-d"]
    assert listed(
        admin_client,
        created_at__gte=str(midnight),
        created_at__lt=str(midnight + timedelta(days=1)),
    ) == ["desk-a", "desk-b", "desk-c", "desk-d"]
    assert (
        listed(
            admin_client,
            created_at__gte=str(midnight - timedelta(days=7)),
            created_at__lt=str(midnight),
        )
        == []
    )
    assert listed(
        admin_client,
        created_at__year=today.year,
        created_at__month=today.month,
        created_at__day=today.day,
    ) == ["desk-a", "desk-b", "desk-c", "desk-d"]


@pytest.mark.parametrize(
    ("url", "table"),
    [
        (ORDERS_URL, "orders_order"),
        ("/admin/orders/fill/", "orders_fill"),
        ("/admin/orders/orderevent/", "orders_orderevent"),
    ],
)
def test_the_big_lists_read_no_date_drilldown_and_no_distinct_venues(
    admin_client, book, url, table
):
    """Django's date_hierarchy and its AllValuesFieldListFilter read `SELECT DISTINCT` over the
    whole table on every page (orders 1M: 210 and 110 ms; events 1M: 301 ms; the event types
    128 ms): the lists use date list filters, the registry's venues and states.EventType
    instead, and the fill and event lists count at most CappedCountPaginator.cap rows
    (orders/admin.py)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(url)
    assert response.status_code == 200
    scans = [
        q["sql"]
        for q in captured.captured_queries
        if table in q["sql"]
        and (
            "DATE_TRUNC" in q["sql"].upper()
            or "django_datetime_trunc" in q["sql"]
            or "DISTINCT" in q["sql"]
        )
    ]
    assert scans == []
    if table != "orders_orderevent":  # the venue filter offers the registry's venues
        assert b"?venue=sim" in response.content
    counts = [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts
    if table != "orders_order":  # the order list's cancel action selects across: exact count
        assert all(f"LIMIT {CappedCountPaginator.cap + 1}" in sql for sql in counts), counts


def test_the_event_list_offers_every_event_type_and_filters_by_one(admin_client, book):
    # when
    everything = admin_client.get(EVENTS_URL)
    fills = admin_client.get(EVENTS_URL, {"type__exact": "fill"})
    # then: types that no stored event has are offered too (read from EventType, not the table)
    for event_type in EventType.values:
        assert f"?type__exact={event_type}".encode() in everything.content
    assert not OrderEvent.objects.filter(type="late_fill").exists()
    assert [(e.order.client_order_id, e.type) for e in fills.context["cl"].result_list] == [
        ("desk-b", "fill")
    ]


def test_the_event_and_fill_lists_count_no_further_than_their_cap(admin_client, book, monkeypatch):
    # given a cap of 3 rows, 2 a page
    from orders.admin import OrderEventAdmin

    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    monkeypatch.setattr(OrderEventAdmin, "list_per_page", 2)
    newest = list(OrderEvent.objects.order_by("-at", "-id").values_list("pk", flat=True))
    assert len(newest) > 3
    # when
    first = admin_client.get(EVENTS_URL)
    second = admin_client.get(EVENTS_URL, {"p": 2})
    beyond = admin_client.get(EVENTS_URL, {"p": 3})
    searched = admin_client.get(EVENTS_URL, {"q": "user:test"})
    one = admin_client.get(EVENTS_URL, {"type__exact": "fill"})
    # then: the first cap rows, in pages, and "more than" where the list holds more
    assert [e.pk for e in first.context["cl"].result_list] == newest[:2]
    assert [e.pk for e in second.context["cl"].result_list] == newest[2:3]
    assert b"more than 3 order events" in first.content
    assert beyond.status_code == 302 and "e=1" in beyond["Location"]
    assert OrderEvent.objects.filter(actor="user:test").count() > 3
    assert b"more than 3 order events" in searched.content
    assert b"3 results" not in searched.content  # the search box prints no capped count
    assert b"0 results" in admin_client.get(EVENTS_URL, {"q": "nobody"}).content
    # a list within the cap reads its exact count
    assert one.context["cl"].result_count == 1
    assert b"more than" not in one.content
    assert b"1 order event\n" in one.content


def _events_found(client, term: str) -> list[tuple[str, int]]:
    response = client.get(EVENTS_URL, {"q": term})
    assert response.status_code == 200
    return sorted((e.order.client_order_id, e.seq) for e in response.context["cl"].result_list)


def test_the_event_list_finds_events_by_correlation_id_actor_or_client_order_id(admin_client, book):
    # given an order submitted under a request's correlation id, cancelled by an admin
    order = order_submit(
        account=Account.objects.get(code="ACC-1"),
        terms=OrderTerms(
            symbol="EUR_USD", side="sell", type="limit", time_in_force="gtc",
            quantity=D("1000"), limit_price=D("1.30000"), client_order_id="desk-e",
        ),
        actor="user:test",
        correlation_id="req-0001",
    ).order  # fmt: skip
    admin_client.post(ORDERS_URL, {"action": "cancel_selected", "_selected_action": [order.pk]})
    # then: each term finds exactly its events, whatever field it matches
    assert _events_found(admin_client, "req-0001") == [("desk-e", 1), ("desk-e", 2)]
    assert _events_found(admin_client, "admin:admin") == [("desk-e", 3)]
    assert _events_found(admin_client, "desk-b") == [
        ("desk-b", seq) for seq in OrderEvent.objects.filter(order=book["b"]).values_list(
            "seq", flat=True
        )
    ]  # fmt: skip
    user_events = OrderEvent.objects.filter(actor="user:test")
    assert _events_found(admin_client, " user:test ") == sorted(
        (e.order.client_order_id, e.seq) for e in user_events
    )
    assert _events_found(admin_client, "desk") == []  # exact matches only
    assert _events_found(admin_client, "nobody") == []


def test_the_fill_list_finds_fills_by_execution_id_or_client_order_id(admin_client, book):
    # given the one fill, of order B
    fill = Fill.objects.get()

    def found(term: str) -> list[str]:
        response = admin_client.get("/admin/orders/fill/", {"q": term})
        return [f.venue_execution_id for f in response.context["cl"].result_list]

    # then
    assert found(fill.venue_execution_id) == [fill.venue_execution_id]
    assert found("desk-b") == [fill.venue_execution_id]
    assert found("desk-a") == []


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("model", "admin_name", "table", "indexes"),
    [
        (OrderEvent, "OrderEventAdmin", "orders_orderevent",
         ["order_event_correlation", "order_event_actor_at", "order_event_unique_seq"]),
        (Fill, "FillAdmin", "orders_fill", ["fill_unique_venue_execution", "fill_order_executed"]),
        (Order, "OrderAdmin", "orders_order",
         ["order_unique_client_order_id", "order_venue_order_id"]),
    ],
)  # fmt: skip
def test_each_big_lists_search_reads_through_indexes_only(
    admin_client, book, rf, model, admin_name, table, indexes
):
    """With sequential scans disabled the planner still takes one when nothing else serves
    the query: Django's own search (an OR of the fields across the join to the orders) did,
    and read every event of 10,000,000 (8.5 s)."""
    from django.contrib import admin as django_admin
    from django.db import connection, transaction

    import orders.admin

    model_admin = getattr(orders.admin, admin_name)(model, django_admin.site)
    queryset, _ = model_admin.get_search_results(rf.get("/"), model.objects.all(), "desk-b")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = queryset.order_by(*model_admin.get_ordering(None) or ["pk"])[:100].explain()
    assert f"Seq Scan on {table}" not in plan, plan
    for index in indexes:
        assert index in plan, plan


def test_the_fill_list_filters_by_venue(admin_client, book):
    # given the fill of order B at the sim venue
    # when the fills are listed for the sim venue and for another one
    sim = admin_client.get("/admin/orders/fill/", {"venue": "sim"}).context["cl"].result_list
    other = admin_client.get("/admin/orders/fill/", {"venue": "other"}).context["cl"].result_list
    # then
    assert [fill.order.client_order_id for fill in sim] == ["desk-b"]
    assert list(other) == []


def test_order_changelist_searches_exact_ids(admin_client, book):
    # then
    assert listed(admin_client, q=str(book["b"].pk)) == ["desk-b"]
    assert listed(admin_client, q="desk-a") == ["desk-a"]
    assert listed(admin_client, q=book["d"].venue_order_id) == ["desk-d"]
    assert listed(admin_client, q="desk") == []


def test_order_changelist_shows_the_desk_columns(admin_client, book):
    # when
    response = admin_client.get(ORDERS_URL)
    # then
    assert response.status_code == 200
    headers = [header["text"] for header in response.context["result_headers"]][1:]
    assert headers == [
        "created at",
        "client order id",
        "account",
        "symbol",
        "side",
        "type",
        "quantity",
        "limit price",
        "status",
        "filled quantity",
        "average fill price",
        "venue",
        "needs review",
    ]


def test_order_change_page_is_read_only_with_fills_and_events_inlines(admin_client, book):
    # given
    order = book["b"]
    # when
    response = admin_client.get(f"{ORDERS_URL}{order.pk}/change/")
    # then
    assert response.status_code == 200
    inlines = {f.opts.model: f for f in response.context["inline_admin_formsets"]}
    events = [form.instance for form in inlines[OrderEvent].formset.forms]
    fills = [form.instance for form in inlines[Fill].formset.forms]
    assert [(e.seq, e.type) for e in events] == [
        (1, "created"),
        (2, "validated"),
        (3, "pending_submit"),
        (4, "acknowledged"),
        (5, "fill"),
    ]
    assert [(f.quantity, f.venue_execution_id) for f in fills] == [
        (D("10"), f"{order.venue_order_id}-1")
    ]
    content = response.content.decode()
    assert 'name="_save"' not in content
    assert "deletelink" not in content
    assert f"{order.venue_order_id}-1" in content


def test_orders_fills_and_events_cannot_be_added_changed_or_deleted(admin_client, book):
    # given
    order = book["b"]
    event = order.events.order_by("seq").first()
    fill = order.fills.get()
    # when / then
    assert admin_client.get(f"{ORDERS_URL}add/").status_code == 403
    assert admin_client.get(f"{ORDERS_URL}{order.pk}/delete/").status_code == 403
    assert (
        admin_client.post(f"{ORDERS_URL}{order.pk}/change/", {"status": "cancelled"}).status_code
        == 403
    )
    assert admin_client.get("/admin/orders/fill/add/").status_code == 403
    assert admin_client.get(f"/admin/orders/fill/{fill.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/orders/orderevent/add/").status_code == 403
    assert admin_client.get(f"/admin/orders/orderevent/{event.pk}/delete/").status_code == 403
    assert admin_client.get(f"/admin/orders/orderevent/{event.pk}/change/").status_code == 200
    assert Order.objects.get(pk=order.pk).status == "filled"


@pytest.mark.parametrize(
    "url",
    [
        "/admin/",
        "/admin/orders/instrument/",
        "/admin/orders/instrument/add/",
        "/admin/orders/account/",
        "/admin/orders/account/add/",
        "/admin/orders/fill/",
        "/admin/orders/orderevent/",
        "/admin/brokers/simquote/",
        "/admin/brokers/simorder/",
        "/admin/brokers/simreport/",
        "/admin/orders/reconciliationrun/",
        "/admin/orders/reconciliationbreak/",
        "/admin/django_celery_beat/periodictask/",
        "/admin/django_celery_beat/intervalschedule/",
        "/admin/django_celery_beat/clockedschedule/",
        "/admin/django_celery_beat/crontabschedule/",
    ],
)
def test_admin_pages_load(admin_client, book, url):
    assert admin_client.get(url).status_code == 200


def test_instrument_and_account_change_pages(admin_client, book):
    # given
    eur = Instrument.objects.get(symbol="EUR_USD")
    acc1 = Account.objects.get(code="ACC-1")
    # when
    instrument_page = admin_client.get(f"/admin/orders/instrument/{eur.pk}/change/")
    account_page = admin_client.get(f"/admin/orders/account/{acc1.pk}/change/")
    # then the instrument is editable and the account's users use the two-box selector
    assert instrument_page.status_code == 200
    assert 'name="_save"' in instrument_page.content.decode()
    assert account_page.status_code == 200
    assert 'class="selectfilter"' in account_page.content.decode()


def test_instrument_can_be_edited(admin_client, instruments):
    # given
    eur = Instrument.objects.get(symbol="EUR_USD")
    # when
    response = admin_client.post(
        f"/admin/orders/instrument/{eur.pk}/change/",
        {
            "symbol": "EUR_USD",
            "asset_class": "fx",
            "base_currency": "EUR",
            "quote_currency": "USD",
            "lot_size": "1000",
            "min_quantity": "1000",
            "tick_size": "0.00001",
            "reference_price": "1.08500",
        },
    )
    # then (is_active left unticked: the instrument is closed for trading)
    assert response.status_code == 302
    eur.refresh_from_db()
    assert (eur.lot_size, eur.min_quantity, eur.is_active) == (D("1000"), D("1000"), False)


def test_sim_venue_pages_are_read_only(admin_client, book):
    # given
    from brokers.models import SimOrder

    sim_order = SimOrder.objects.get(client_order_id=str(book["b"].pk))
    # then
    assert admin_client.get(f"/admin/brokers/simorder/{sim_order.pk}/change/").status_code == 200
    assert admin_client.get("/admin/brokers/simorder/add/").status_code == 403
    assert admin_client.get(f"/admin/brokers/simorder/{sim_order.pk}/delete/").status_code == 403


def test_beat_schedule_pages_show_the_declared_entries(admin_client, db):
    # given
    call_command("setup_periodic_tasks", stdout=StringIO())
    # when
    response = admin_client.get("/admin/django_celery_beat/periodictask/")
    # then
    assert response.status_code == 200
    names = sorted(task.name for task in response.context["cl"].result_list)
    assert names == [
        "fillmore: evaluate circuit breakers",
        "fillmore: expire orders",
        "fillmore: poll venues",
        "fillmore: prune outbox",
        "fillmore: reconcile venues",
        "fillmore: relay outbox",
        "fillmore: snapshot accounts",
        "fillmore: sweep stuck orders",
    ]


# --- the cancel action -------------------------------------------------------------------------


def test_order_actions_are_cancel_only(admin_client, book):
    # when
    response = admin_client.get(ORDERS_URL)
    # then: no delete action
    assert response.context["action_form"].fields["action"].choices == [
        ("", "---------"),
        ("cancel_selected", "Cancel selected orders"),
    ]


def test_cancel_action_cancels_through_the_service(admin_client, book):
    # given a validated order, a filled one and one resting at the venue
    a, b, d = book["a"], book["b"], book["d"]
    b_events = b.events.count()
    # when the desk cancels all three
    response = admin_client.post(
        ORDERS_URL,
        {"action": "cancel_selected", "_selected_action": [str(a.pk), str(b.pk), str(d.pk)]},
        follow=True,
    )
    # then
    assert response.status_code == 200
    assert [str(m) for m in response.context["messages"]] == [
        "Orders: 1 cancelled, 1 cancel requested at the venue (pending_cancel), "
        "1 skipped (already finished)."
    ]
    a.refresh_from_db()
    assert (a.status, a.remaining_quantity) == ("cancelled", D("0"))
    last = a.events.order_by("-seq").first()
    assert (last.seq, last.type, last.actor, last.data["reason"]) == (
        3,
        "cancelled",
        "admin:admin",
        "cancelled in the admin",
    )
    assert last.correlation_id != ""
    d.refresh_from_db()
    assert d.status == "pending_cancel"
    assert d.events.order_by("-seq").values_list("type", "actor").first() == (
        "pending_cancel",
        "admin:admin",
    )
    assert list(
        OutboxMessage.objects.filter(task="orders.cancel").values_list(
            "kwargs__order_id", flat=True
        )
    ) == [str(d.pk)]
    assert Order.objects.get(pk=b.pk).status == "filled"
    assert b.events.count() == b_events


def test_cancel_action_needs_the_change_permission(client, book):
    # given a staff user who may only view orders
    user = get_user_model().objects.create_user("viewer", password="viewer-pass", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(user)
    a = book["a"]
    # when
    page = client.get(ORDERS_URL)
    posted = client.post(ORDERS_URL, {"action": "cancel_selected", "_selected_action": [str(a.pk)]})
    # then the list shows, without actions, and the post cancels nothing
    assert page.status_code == 200
    assert page.context["action_form"] is None
    assert posted.status_code in (200, 302)
    assert Order.objects.get(pk=a.pk).status == "validated"
