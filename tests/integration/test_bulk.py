"""tradingsite.bulk: the statements that write many rows at once store exactly what the ORM's
own saves would (and every order written with them still replays from its events: the
suite's autouse check)."""

import uuid
from datetime import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.models import Order, OrderEvent, OutboxMessage
from tradingsite import bulk
from tradingsite.bulk import rows_insert

pytestmark = pytest.mark.django_db

AWKWARD = "tab\there, newline\nthere, backslash \\ and \\N, quotes ' \" and é€"


def awkward_batch(count: int) -> dict:
    return {
        "orders": [
            {
                "account": "ACC-1",
                "client_order_id": f"copy-{n}",
                "symbol": "EUR_USD",
                "side": "buy",
                "type": "limit",
                "quantity": "1000",
                "limit_price": "1.08001",
                "strategy_id": f"s\t{n}\\N",
                "metadata": {"note": AWKWARD, "n": n, "empty": None, "amount": "0.0000000001"},
            }
            for n in range(count)
        ]
    }


@pytest.fixture(params=["json", "values"])
def path(request, monkeypatch):
    """Rows as one JSON document (PostgreSQL's usual path), or as VALUES rows of parameters
    (the path for values a JSON document cannot carry)."""
    if request.param == "values":
        monkeypatch.setattr(bulk, "_json_document", lambda keys, rows: None)
    return request.param


@pytest.mark.parametrize("count", [1, 3, 25])
def test_a_batch_stores_exactly_what_was_sent(api, settings, count, path):
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    response = api.post("/api/v1/orders/batch/", awkward_batch(count), format="json")
    assert response.status_code == 200
    sent = awkward_batch(count)["orders"]
    for body, result in zip(sent, response.json()["results"], strict=True):
        order = Order.objects.get(pk=result["order"]["id"])
        assert (order.client_order_id, order.strategy_id, order.metadata) == (
            body["client_order_id"],
            body["strategy_id"],
            body["metadata"],
        )
        assert (order.quantity, order.limit_price) == (Decimal("1000"), Decimal("1.08001"))
        events = list(order.events.order_by("seq").values_list("type", "data"))
        assert [kind for kind, _ in events] == ["created", "validated"]
        assert events[0][1]["changes"]["client_order_id"] == body["client_order_id"]


@pytest.mark.postgres
def test_a_batch_writes_its_rows_as_json_with_one_text_for_any_size(api, settings):
    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    texts: list[list[str]] = []

    def statement_text(execute, sql, params, many, context):
        if "INSERT INTO" in sql:
            texts[-1].append(sql)  # as sent, before psycopg binds the values
            assert [type(p) for p in params] == [str, str, str]  # one document per table
        return execute(sql, params, many, context)

    for count in (2, 30):
        texts.append([])
        batch = awkward_batch(count)
        for body in batch["orders"]:
            body["client_order_id"] += f"-{count}"
        with connection.execute_wrapper(statement_text):
            assert api.post("/api/v1/orders/batch/", batch, format="json").status_code == 200
    assert len(texts[0]) == 1  # the orders, their events and the outbox row: one statement
    inserts = [part.split(" (")[0] for part in texts[0][0].split("INSERT INTO ")[1:]]
    assert inserts == ['"orders_order"', '"orders_orderevent"', '"orders_outboxmessage"']
    assert texts[0] == texts[1] and texts[0][0].count("json_populate_recordset") == 3


@pytest.mark.parametrize("count", [1, 4])
def test_every_kind_of_value_is_stored_as_the_orms_save_stores_it(trader, instruments, count, path):
    """Awkward text, decimals written every way, nulls, datetimes at other offsets, and JSON
    values of every kind, inserted by rows_insert and by RowWrites, read back equal to the
    same objects saved one by one by the ORM."""
    from datetime import datetime, timedelta, timezone

    from orders.models import Account, Position
    from tradingsite.bulk import RowWrites

    kwargs_kinds = [{"note": AWKWARD, "nested": [1, None, {"a": "0.10"}]}, {}, {"k": "é€\\n"}]
    when = datetime(2026, 12, 4, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    def messages(tag):
        return [
            OutboxMessage(
                task=f"{tag}{AWKWARD[: 5 + n]}",
                kwargs=kwargs_kinds[n % 3],
                published_at=None if n % 2 else when + timedelta(microseconds=n),
                created_at=when,
            )
            for n in range(count)
        ]

    account = Account.objects.get(code="ACC-1")

    def positions(tag):
        return [
            Position(
                account=account,
                instrument_id=instruments["EUR_USD"].pk,
                strategy_id=f"{tag}{n}",
                quantity=[Decimal("1E+3"), Decimal("-0.0000000001"), Decimal("12345678.5")][n % 3],
                average_price=Decimal(0) if n % 2 else Decimal("1.0800000000"),
                opened_at=when,
                updated_at=when,
            )
            for n in range(count)
        ]

    for model, build in ((OutboxMessage, messages), (Position, positions)):
        saved = build("orm")
        for obj in saved:
            obj.save()
        inserted, added = build("ins"), build("add")
        rows_insert(inserted)
        assert all(obj.pk is not None for obj in inserted)
        writes = RowWrites()
        writes.insert(added)
        writes.flush()
        fields = [f.attname for f in model._meta.concrete_fields if not f.primary_key]

        def stored(objs, tag, fields=fields, model=model):
            key = "task" if model is OutboxMessage else "strategy_id"
            rows = model.objects.filter(**{f"{key}__startswith": tag}).order_by(key)
            return [
                {f: (v[len(tag) :] if f == key else v) for f, v in row.items()}
                for row in rows.values(*fields)
            ]

        assert stored(inserted, "ins") == stored(saved, "orm") == stored(added, "add")
        assert len(stored(saved, "orm")) == count


def test_a_value_json_cannot_carry_goes_as_parameters():
    assert bulk._json_document(["a"], [[Decimal("1.50")]]) == '[{"a":"1.50"}]'
    assert bulk._json_document(["a"], [[2**70]]) is None  # beyond 64 bits
    assert bulk._json_document(["a"], [[object()]]) is None
    assert bulk._json_document(["a"], [[b"bytes"]]) is None


def test_rows_insert_sets_generated_keys(db):
    messages = [OutboxMessage(task="t", kwargs={"n": n, "text": AWKWARD}) for n in range(3)]
    rows_insert(messages)
    assert all(m.pk for m in messages)
    stored = dict(OutboxMessage.objects.filter(task="t").values_list("pk", "kwargs"))
    assert stored == {m.pk: m.kwargs for m in messages}


def test_a_failing_rows_insert_writes_nothing_and_leaves_the_transaction_usable(api):
    taken = Order.objects.get(pk=api.post(
        "/api/v1/orders/",
        {"account": "ACC-1", "client_order_id": "taken", "symbol": "EUR_USD", "side": "buy",
         "type": "limit", "quantity": "1000", "limit_price": "1.08000"},
        format="json",
    ).json()["id"])  # fmt: skip
    again = Order(
        **{f.attname: getattr(taken, f.attname) for f in Order._meta.concrete_fields},
    )
    again.id = uuid.uuid4()
    message = OutboxMessage(task="t", kwargs={})
    with transaction.atomic():
        with pytest.raises(IntegrityError):  # (account, client_order_id) is taken
            rows_insert([again], [message])
        assert message.pk is None
        assert not OutboxMessage.objects.filter(task="t").exists()
        assert not OrderEvent.objects.filter(order_id=again.id).exists()


# --- rows_select --------------------------------------------------------------------------


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_rows_select_reads_what_the_orm_reads_with_the_related_rows(api, settings):
    from tradingsite.bulk import rows_select

    settings.ORDERS_INTAKE_BACKLOG_CHECK_SECONDS = 3600
    response = api.post("/api/v1/orders/batch/", awkward_batch(3), format="json")
    assert response.status_code == 200
    ids = list(Order.objects.values_list("pk", flat=True))
    expected = {
        o.pk: o for o in Order.objects.select_related("instrument", "account").filter(pk__in=ids)
    }
    with CaptureQueriesContext(connection) as captured:
        found = rows_select(
            Order, {"id": ids}, related=("instrument", "account"), order_by=("id",), lock=True
        )
        for order in found:  # the related rows came with them: no query to reach them
            assert order.instrument.symbol == "EUR_USD"
            assert order.account.code == "ACC-1"
    assert len(captured) == 1
    assert [o.pk for o in found] == sorted(ids)
    for order in found:
        want = expected[order.pk]
        assert _fields(order) == _fields(want)  # JSON, decimals, datetimes, UUIDs alike
        assert _fields(order.instrument) == _fields(want.instrument)
        assert _fields(order.account) == _fields(want.account)
        assert not order._state.adding and order._state.db == connection.alias
        assert order.metadata["note"] == AWKWARD


def test_rows_select_by_value_combinations_and_nothing_for_an_empty_list(trader, instruments):
    from orders.models import Account, Position
    from tradingsite.bulk import rows_select

    account = Account.objects.get(code="ACC-1")
    assert rows_select(Order, {"id": []}) == []
    first, second = (
        Position.objects.create(account=account, instrument=instruments[symbol], strategy_id=s)
        for symbol, s in (("EUR_USD", "s1"), ("AAPL", "s2"))
    )
    keys = [(account.pk, instruments["EUR_USD"].pk, "s1"), (account.pk, first.instrument_id, "x")]
    found = rows_select(Position, {("account", "instrument", "strategy_id"): keys})
    assert [p.pk for p in found] == [first.pk]
    assert [p.pk for p in rows_select(Position, {"strategy_id": "s2"})] == [second.pk]


def test_one_value_or_combination_is_read_with_plain_equalities(
    trader, instruments, django_assert_num_queries
):
    from orders.models import Account, Position
    from tradingsite.bulk import rows_select

    account = Account.objects.get(code="ACC-1")
    held = Position.objects.create(account=account, instrument=instruments["EUR_USD"])
    key = (account.pk, held.instrument_id, "")
    with django_assert_num_queries(2) as captured:
        by_key = rows_select(Position, {("account", "instrument", "strategy_id"): [key]})
        by_id = rows_select(Position, {"id": [held.pk]})
    assert [p.pk for p in by_key] == [p.pk for p in by_id] == [held.pk]
    # no array parameter: a lone order's reads cost psycopg less to send
    assert not any("ANY" in q["sql"] or "UNNEST" in q["sql"] for q in captured.captured_queries)


# --- RowWrites ----------------------------------------------------------------------------


def test_row_writes_update_and_insert_in_one_statement(trader, instruments):
    from orders.models import Account, CashMovement, Position
    from tradingsite.bulk import RowWrites

    account = Account.objects.get(code="ACC-1")
    positions = [
        Position.objects.create(account=account, instrument=instruments[s], strategy_id="rw")
        for s in ("EUR_USD", "AAPL")
    ]
    for n, position in enumerate(positions):
        position.quantity = Decimal("1000.5") * (n + 1)
    account.cash = Decimal("123.4567890123")
    movements = [
        CashMovement(account=account, amount=Decimal(n), reason=AWKWARD, actor="t") for n in (1, 2)
    ]
    writes = RowWrites()
    writes.update(positions, ["quantity"])
    writes.update([account], ["cash"])
    writes.insert(movements)
    with CaptureQueriesContext(connection) as captured:
        writes.flush()
    if connection.vendor == "postgresql":  # (elsewhere one statement per write)
        assert len(captured) == 1
    assert [p.quantity for p in Position.objects.filter(strategy_id="rw").order_by("pk")] == [
        Decimal("1000.5"),
        Decimal("2001.0"),
    ]
    assert Account.objects.get(pk=account.pk).cash == Decimal("123.4567890123")
    stored = CashMovement.objects.filter(account=account).order_by("amount")
    assert [(m.amount, m.reason) for m in stored] == [(Decimal(1), AWKWARD), (Decimal(2), AWKWARD)]
    # and a flushed RowWrites is empty
    with CaptureQueriesContext(connection) as captured:
        writes.flush()
    assert len(captured) == 0


# --- QueryTemplate ------------------------------------------------------------------------


def test_a_query_template_answers_what_its_queryset_would(trader, instruments):
    from datetime import UTC, datetime, timedelta

    from orders.models import Account, CashMovement
    from tradingsite.bulk import QueryTemplate

    account = Account.objects.get(code="ACC-1")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(5):
        CashMovement.objects.create(
            account=account, amount=Decimal(n), reason="r", actor="t", at=start + timedelta(n)
        )

    def build(low, since):
        return (
            CashMovement.objects.filter(amount__gte=low, at__gte=since)
            .order_by("amount")
            .values_list("amount", flat=True)
        )

    template = QueryTemplate(
        build, low=Decimal("-1.000000000123"), since=datetime(1901, 2, 3, tzinfo=UTC)
    )
    for low, since in [
        (Decimal(1), start),
        (Decimal(0), start + timedelta(3)),
        (Decimal(9), start),
    ]:
        assert [row[0] for row in template.rows(low=low, since=since)] == list(build(low, since))
    # compiled once where the values reach the database as they are (PostgreSQL); elsewhere
    # (SQLite sends decimals and datetimes as text) built again for each call
    assert (template.compiled is not None) == (connection.vendor == "postgresql")


@pytest.mark.parametrize("count", [1, 7])
def test_rows_update_writes_every_kind_of_value(trader, instruments, count, path):
    """Decimals, nulls, awkward text, JSON and datetimes, as a JSON document and as VALUES
    rows."""
    from django.utils import timezone

    from orders.models import Account, Position
    from tradingsite.bulk import rows_update

    messages = [OutboxMessage.objects.create(task="t", kwargs={}) for _ in range(count)]
    when = timezone.now()
    for n, message in enumerate(messages):
        message.task = AWKWARD[: 10 + n]
        message.kwargs = {"note": AWKWARD, "n": n, "none": None, "amount": "0.0000000001"}
        message.published_at = None if n % 2 else when
    assert rows_update(messages, ["task", "kwargs", "published_at"]) == count
    for n, message in enumerate(messages):
        stored = OutboxMessage.objects.get(pk=message.pk)
        assert (stored.task, stored.kwargs) == (AWKWARD[: 10 + n], message.kwargs)
        assert stored.published_at == (None if n % 2 else when)
    account = Account.objects.get(code="ACC-1")
    positions = [
        Position.objects.create(
            account=account, instrument_id=instruments["EUR_USD"].pk, strategy_id=f"s{n}"
        )
        for n in range(count)
    ]
    for n, position in enumerate(positions):
        position.quantity = Decimal("-1000.0000000001") * n
        position.average_price = Decimal("1.0800000001") * n
        position.opened_at = None if n % 2 else when
    assert rows_update(positions, ["quantity", "average_price", "opened_at"]) == count
    for n, position in enumerate(positions):
        stored = Position.objects.get(pk=position.pk)
        assert (stored.quantity, stored.average_price, stored.opened_at) == (
            Decimal("-1000.0000000001") * n,
            Decimal("1.0800000001") * n,
            None if n % 2 else when,
        )


@pytest.mark.postgres
def test_many_rows_read_and_write_with_one_statement_text_whatever_their_number(
    trader, instruments
):
    """Lists of values travel as arrays (reads) and as a JSON document (writes) on PostgreSQL:
    the statement text does not change with the number of rows, so each is prepared once per
    connection, not once per batch size."""
    from orders.models import Account, Position
    from tradingsite.bulk import rows_select, rows_update

    account = Account.objects.get(code="ACC-1")
    positions = [
        Position.objects.create(
            account=account, instrument_id=instruments["EUR_USD"].pk, strategy_id=f"s{n}"
        )
        for n in range(12)
    ]
    texts: list[list[str]] = []

    def statement_text(execute, sql, params, many, context):
        texts[-1].append(sql)  # as sent, before psycopg binds the values
        return execute(sql, params, many, context)

    for count in (9, 12):  # one power of two above both: one text (json_sql's LIMIT)
        some = positions[:count]
        texts.append([])
        with connection.execute_wrapper(statement_text):
            assert len(rows_select(Position, {"id": [p.pk for p in some]})) == count
            keys = [(p.account_id, p.instrument_id, p.strategy_id) for p in some]
            found = rows_select(Position, {("account", "instrument", "strategy_id"): keys})
            assert sorted(p.pk for p in found) == sorted(p.pk for p in some)
            for p in some:
                p.quantity = Decimal(count)
            assert rows_update(some, ["quantity"]) == count
    assert len(texts[0]) == 3 and texts[0] == texts[1]
    assert Position.objects.filter(quantity=Decimal(12)).count() == 12


@pytest.mark.postgres
def test_a_few_rows_are_updated_through_the_primary_key_index(trader, instruments):
    """The JSON document's rows are told to the planner (a LIMIT): among thousands of rows it
    looks the few up by their key instead of hashing a scan of the whole table."""
    from orders.models import Account, Position
    from tradingsite.bulk import rows_update_sql

    account = Account.objects.get(code="ACC-1")
    positions = Position.objects.bulk_create(
        [
            Position(account=account, instrument_id=instruments["EUR_USD"].pk, strategy_id=f"s{n}")
            for n in range(5000)
        ],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE orders_position")
        for count in (1, 3, 40):
            sql, params = rows_update_sql(positions[:count], ["quantity"])
            assert "json_to_recordset" in sql
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            told = 1 << (count - 1).bit_length()
            limit = next(line for line in plan.splitlines() if "Limit" in line)
            assert f" rows={told} " in limit, plan  # the planner's estimate of the rows
            if count < 8:  # more, and hashing one scan of 5,000 rows is the planner's choice
                assert "Seq Scan on orders_position" not in plan, plan
                assert "orders_position_pkey" in plan, plan


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=64
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
AMOUNTS = st.decimals(
    min_value=Decimal("-99999999999999999"), max_value=Decimal("99999999999999999"), places=10
).map(lambda d: d.normalize() if d else d)  # exponents of every kind: 1E+3, 1.5, -0.0000000001
WHEN = st.datetimes(
    min_value=datetime(1800, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.timezones()
)


@pytest.mark.postgres
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(task=TEXT, kwargs=st.dictionaries(TEXT, JSONISH, max_size=4), when=WHEN, amount=AMOUNTS)
def test_any_value_the_json_document_carries_is_stored_as_the_values_rows_store_it(
    trader, instruments, monkeypatch, task, kwargs, when, amount
):
    """Generated values, written as a JSON document and as VALUES rows of parameters, each
    read back equal (the two paths of every bulk write on PostgreSQL)."""
    from orders.models import Account, Position

    account = Account.objects.get(code="ACC-1")
    stored = []
    for path in ("json", "values"):
        with transaction.atomic():
            if path == "values":
                monkeypatch.setattr(bulk, "_json_document", lambda keys, rows: None)
            message = OutboxMessage(task=task, kwargs=kwargs, published_at=when, created_at=when)
            position = Position(
                account=account,
                instrument_id=instruments["EUR_USD"].pk,
                strategy_id=task,
                quantity=amount,
                average_price=abs(amount),
                opened_at=when,
                updated_at=when,
            )
            rows_insert([message], [position])
            stored.append(
                (
                    OutboxMessage.objects.filter(pk=message.pk).values(
                        "task", "kwargs", "published_at"
                    )[0],
                    Position.objects.filter(pk=position.pk).values(
                        "strategy_id", "quantity", "average_price", "opened_at"
                    )[0],
                )
            )
            transaction.set_rollback(True)
        monkeypatch.undo()
    assert stored[0] == stored[1]
    assert stored[0][0]["kwargs"] == kwargs and stored[0][1]["quantity"] == amount
