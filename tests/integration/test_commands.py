"""The management commands: seed_demo, create_trader, setup_periodic_tasks, run_market_data."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from brokers.models import SimOrder, SimQuote, SimReport
from brokers.registry import venue_for
from brokers.sim import engine
from brokers.sim.config import walk_spec_for
from orders.models import Account, Instrument
from orders.schedules import PREFIX, ScheduleEntry, periodic_tasks_sync
from orders.services import venue_poll
from tests.helpers import resting_buy, venue_ticket, wide_eur_usd_book

pytestmark = pytest.mark.django_db

D = Decimal


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def demo_env(monkeypatch):
    monkeypatch.delenv("DEMO_ADMIN_USER", raising=False)
    monkeypatch.delenv("DEMO_ADMIN_PASSWORD", raising=False)


def table_counts() -> dict[str, int]:
    user_model = get_user_model()
    return {
        "instruments": Instrument.objects.count(),
        "users": user_model.objects.count(),
        "groups": Group.objects.count(),
        "accounts": Account.objects.count(),
        "tokens": Token.objects.count(),
        "grants": Account.users.through.objects.count(),
    }


# --- seed_demo ----------------------------------------------------------------------------------


def test_seed_demo_twice_makes_the_same_rows_and_keeps_the_token(demo_env):
    # given a first seed
    first, _ = run("seed_demo")
    counts = table_counts()
    token = Token.objects.get(user__username="demo")
    # when it runs again
    second, _ = run("seed_demo")
    # then nothing was added, the token is the same, and only the password line differs
    assert (
        table_counts()
        == counts
        == {
            "instruments": 6,
            "users": 2,
            "groups": 2,
            "accounts": 1,
            "tokens": 1,
            "grants": 1,
        }
    )
    assert Token.objects.get(user__username="demo").key == token.key
    assert first.splitlines() == [
        "admin: admin / admin",
        f"trader: demo token {token.key}",
        "account: DEMO-1",
    ]
    assert second.splitlines() == [
        "admin: admin / (unchanged)",
        f"trader: demo token {token.key}",
        "account: DEMO-1",
    ]


def test_seed_demo_instruments_have_exact_decimal_terms(demo_env):
    # when
    run("seed_demo")
    # then
    rows = {
        i.symbol: (
            i.asset_class,
            i.base_currency,
            i.quote_currency,
            i.lot_size,
            i.min_quantity,
            i.tick_size,
            i.reference_price,
            i.is_active,
        )
        for i in Instrument.objects.all()
    }
    assert rows == {
        "EUR_USD": ("fx", "EUR", "USD", D("1"), D("1"), D("0.00001"), D("1.08500"), True),
        "GBP_USD": ("fx", "GBP", "USD", D("1"), D("1"), D("0.00001"), D("1.27000"), True),
        "USD_JPY": ("fx", "USD", "JPY", D("1"), D("1"), D("0.001"), D("150.000"), True),
        "AAPL": ("equity", "AAPL", "USD", D("1"), D("1"), D("0.01"), D("190.00"), True),
        "MSFT": ("equity", "MSFT", "USD", D("1"), D("1"), D("0.01"), D("420.00"), True),
        "BTC_USD": (
            "crypto",
            "BTC",
            "USD",
            D("0.0001"),
            D("0.0001"),
            D("0.01"),
            D("65000.00"),
            True,
        ),
    }
    ticks = {symbol: format(row[5].normalize(), "f") for symbol, row in rows.items()}
    assert ticks == {
        "EUR_USD": "0.00001",
        "GBP_USD": "0.00001",
        "USD_JPY": "0.001",
        "AAPL": "0.01",
        "MSFT": "0.01",
        "BTC_USD": "0.01",
    }
    assert all(isinstance(value, Decimal) for row in rows.values() for value in row[3:7])


def test_seed_demo_makes_the_admin_the_trader_and_the_account(demo_env):
    # when
    run("seed_demo")
    # then
    user_model = get_user_model()
    admin = user_model.objects.get(username="admin")
    assert (admin.is_superuser, admin.is_staff, admin.check_password("admin")) == (True, True, True)
    demo = user_model.objects.get(username="demo")
    assert (demo.is_superuser, demo.is_staff, demo.has_usable_password()) == (False, False, False)
    account = Account.objects.get(code="DEMO-1")
    assert account.currency == "USD"
    assert list(account.users.values_list("username", flat=True)) == ["demo"]
    assert sorted(Group.objects.values_list("name", flat=True)) == ["compliance", "risk"]


def test_seed_demo_sets_the_admin_password_only_when_asked(demo_env, monkeypatch):
    # given an admin whose password was changed after the first seed
    run("seed_demo")
    admin = get_user_model().objects.get(username="admin")
    admin.set_password("changed-by-hand")
    admin.save()
    # when the seed runs again without DEMO_ADMIN_PASSWORD
    out, _ = run("seed_demo")
    # then the password is kept
    admin.refresh_from_db()
    assert out.splitlines()[0] == "admin: admin / (unchanged)"
    assert admin.check_password("changed-by-hand")
    # when it runs with DEMO_ADMIN_PASSWORD and another admin name
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "s3cret-pass")
    out, _ = run("seed_demo")
    # then the password is set and printed
    admin.refresh_from_db()
    assert out.splitlines()[0] == "admin: admin / s3cret-pass"
    assert admin.check_password("s3cret-pass")


def test_seed_demo_admin_name_comes_from_the_environment(demo_env, monkeypatch):
    # given
    monkeypatch.setenv("DEMO_ADMIN_USER", "desk")
    monkeypatch.setenv("DEMO_ADMIN_PASSWORD", "desk-password")
    # when
    out, _ = run("seed_demo")
    # then
    assert out.splitlines()[0] == "admin: desk / desk-password"
    desk = get_user_model().objects.get(username="desk")
    assert (desk.is_superuser, desk.check_password("desk-password")) == (True, True)
    assert not get_user_model().objects.filter(username="admin").exists()


# --- create_trader -----------------------------------------------------------------------------


def test_create_trader_prints_only_a_token_that_authenticates(db):
    # when
    out, _ = run("create_trader", "carol", "--account", "ACC-9")
    # then stdout is the token and nothing else
    token = Token.objects.get(user__username="carol")
    assert out == f"{token.key}\n"
    account = Account.objects.get(code="ACC-9")
    assert (account.currency, list(account.users.values_list("username", flat=True))) == (
        "USD",
        ["carol"],
    )
    # and the token opens the API
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {out.strip()}")
    assert client.get("/api/v1/orders/").status_code == 200
    assert APIClient().get("/api/v1/orders/").status_code == 401


def test_create_trader_twice_reuses_everything(db):
    # given
    first, _ = run("create_trader", "carol", "--account", "ACC-9", "--currency", "eur")
    counts = table_counts()
    # when
    second, _ = run("create_trader", "carol", "--account", "ACC-9")
    # then
    assert second == first
    assert table_counts() == counts
    assert Account.objects.get(code="ACC-9").currency == "EUR"


def test_create_trader_role_adds_the_group(db):
    # when
    run("create_trader", "rita", "--account", "ACC-R", "--role", "risk")
    run("create_trader", "colin", "--account", "ACC-C", "--role", "compliance")
    # then
    user_model = get_user_model()
    assert list(user_model.objects.get(username="rita").groups.values_list("name", flat=True)) == [
        "risk"
    ]
    assert list(user_model.objects.get(username="colin").groups.values_list("name", flat=True)) == [
        "compliance"
    ]


def test_create_trader_grants_an_existing_account_to_a_second_trader(db):
    # given
    run("create_trader", "carol", "--account", "ACC-9")
    # when
    run("create_trader", "dave", "--account", "ACC-9")
    # then
    assert sorted(Account.objects.get(code="ACC-9").users.values_list("username", flat=True)) == [
        "carol",
        "dave",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["carol", "--account", "ACC 9"], "account code 'ACC 9'"),
        (["carol", "--account", ""], "account code ''"),
        (["bad name!", "--account", "ACC-9"], "user name 'bad name!'"),
        (["carol", "--account", "ACC-9", "--currency", "us$"], r"currency 'US\$'"),
        (["carol", "--account", "ACC-9", "--role", "admin"], "invalid choice: 'admin'"),
    ],
)
def test_create_trader_refuses_bad_input_and_writes_nothing(db, args, message):
    # given
    counts = table_counts()
    # when / then
    with pytest.raises(CommandError, match=message):
        run("create_trader", *args)
    assert table_counts() == counts


def test_create_trader_refuses_a_currency_other_than_the_accounts(db):
    # given
    Account.objects.create(code="ACC-9", currency="USD")
    counts = table_counts()
    # when / then
    with pytest.raises(CommandError, match="account ACC-9 exists with currency USD, not EUR"):
        run("create_trader", "carol", "--account", "ACC-9", "--currency", "EUR")
    assert table_counts() == counts


# --- setup_periodic_tasks ----------------------------------------------------------------------

EXPECTED_SCHEDULE = {
    # name: (task, every, period, expire_seconds, queue, enabled)
    "fillmore: poll venues": ("orders.poll_venues", 1, "seconds", 2, "housekeeping", True),
    "fillmore: relay outbox": ("orders.relay_outbox", 1, "seconds", 2, "housekeeping", True),
    "fillmore: sweep stuck orders": ("orders.sweep_stuck", 5, "seconds", 10, "housekeeping", True),
    "fillmore: expire orders": ("orders.expire", 5, "seconds", 10, "housekeeping", True),
    "fillmore: reconcile venues": ("orders.reconcile", 1, "minutes", 50, "housekeeping", True),
    "fillmore: evaluate circuit breakers": (
        "risk.evaluate_breakers",
        5,
        "seconds",
        10,
        "housekeeping",
        True,
    ),
    "fillmore: snapshot accounts": (
        "orders.snapshot_accounts",
        1,
        "minutes",
        50,
        "housekeeping",
        True,
    ),
    "fillmore: prune outbox": ("orders.prune_outbox", 1, "hours", 1800, "housekeeping", True),
}


def schedule_rows() -> dict[str, tuple]:
    return {
        task.name: (
            task.task,
            task.interval.every,
            task.interval.period,
            task.expire_seconds,
            task.queue,
            task.enabled,
        )
        for task in PeriodicTask.objects.select_related("interval")
    }


def test_setup_periodic_tasks_twice_gives_the_same_entries(db):
    # given
    first, _ = run("setup_periodic_tasks")
    changed_at = dict(PeriodicTask.objects.values_list("name", "date_changed"))
    intervals = IntervalSchedule.objects.count()
    # when
    second, _ = run("setup_periodic_tasks")
    # then the entries are as declared and the second run wrote nothing
    assert schedule_rows() == EXPECTED_SCHEDULE
    assert dict(PeriodicTask.objects.values_list("name", "date_changed")) == changed_at
    assert IntervalSchedule.objects.count() == intervals == 4
    assert first.splitlines()[-1] == (
        "periodic tasks: 8 created, 0 updated, 0 unchanged, 0 disabled"
    )
    assert second.splitlines() == ["periodic tasks: 0 created, 0 updated, 8 unchanged, 0 disabled"]


def test_setup_periodic_tasks_repairs_an_edited_entry_and_disables_undeclared_ones(db):
    # given an entry edited in the admin, an old entry of ours and an operator's own entry
    run("setup_periodic_tasks")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.filter(name="fillmore: poll venues").update(
        interval=every_minute, queue=None, enabled=False
    )
    PeriodicTask.objects.create(name="fillmore: old job", task="orders.old", interval=every_minute)
    PeriodicTask.objects.create(name="nightly export", task="reports.x", interval=every_minute)
    # when
    out, _ = run("setup_periodic_tasks")
    # then
    rows = schedule_rows()
    assert {name: rows[name] for name in EXPECTED_SCHEDULE} == EXPECTED_SCHEDULE
    assert rows["fillmore: old job"][-1] is False
    assert rows["nightly export"][-1] is True
    assert out.splitlines() == [
        "updated: fillmore: poll venues",
        "disabled: fillmore: old job",
        "periodic tasks: 0 created, 1 updated, 7 unchanged, 1 disabled",
    ]


def test_schedule_entries_must_carry_the_prefix(db):
    # given
    entry = ScheduleEntry(
        name="poll", task="orders.poll_venues", every=timedelta(seconds=1), expire_seconds=2
    )
    # when / then
    with pytest.raises(ValueError, match=f"must start with '{PREFIX}'"):
        periodic_tasks_sync(entries=(entry,))
    assert PeriodicTask.objects.count() == 0


# --- run_market_data ---------------------------------------------------------------------------


@pytest.fixture
def published(monkeypatch):
    """What the market-data loop publishes, instead of sending it to Redis."""
    from tradingsite.celery import app

    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(app, "send_task", lambda name, **options: sent.append((name, options)))
    return sent


def test_run_market_data_steps_every_quote_and_fills_a_crossed_resting_limit(
    instruments, published
):
    # given every instrument quoted, and EUR_USD quoted 100 ticks wide
    venue = venue_for("sim")
    symbols = sorted(instruments)
    venue.quotes(symbols)
    spec = walk_spec_for("EUR_USD")
    # and a buy limit 50 ticks above the bid, below the wide ask: it rests
    limit = wide_eur_usd_book(venue)
    reports = venue.submit(
        venue_ticket(
            "md-test-1", type="limit", time_in_force="gtc", quantity="1000", limit_price=limit
        )
    )
    assert [report.kind for report in reports] == ["ack"]
    seqs = dict(SimQuote.objects.values_list("symbol", "seq"))
    wide = venue.quotes(["EUR_USD"])["EUR_USD"]
    # the walk's next EUR_USD quote is back to the normal spread, within 5 ticks of the bid
    expected_next = engine.next_quote(spec, venue.seed, wide)
    assert expected_next.ask <= limit
    # when three steps run
    run("run_market_data", "--steps", "3", "--interval-ms", "1")
    # then every quote moved three steps
    assert dict(SimQuote.objects.values_list("symbol", "seq")) == {
        symbol: seq + 3 for symbol, seq in seqs.items()
    }
    assert set(seqs) == set(symbols)
    # and the resting order filled at its limit, as maker, on the first step
    order = SimOrder.objects.get(client_order_id="md-test-1")
    assert (order.status, order.filled_quantity) == ("filled", D("1000"))
    fills = list(order.reports.filter(kind="fill").values_list("quantity", "price", "liquidity"))
    assert fills == [(D("1000"), limit, "maker")]
    # and the order side was told once, by task name, right after the step that filled it
    assert [name for name, _ in published] == ["orders.poll_venues"]
    assert published[0][1]["expires"] == 5


def test_run_market_data_without_reports_publishes_nothing(instruments, published):
    # given quotes and no resting orders
    venue_for("sim").quotes(sorted(instruments))
    reports_before = SimReport.objects.count()
    # when
    run("run_market_data", "--steps", "2", "--interval-ms", "1")
    # then
    assert SimReport.objects.count() == reports_before == 0
    assert published == []


def test_run_market_data_skips_inactive_instruments(instruments, published):
    # given
    venue_for("sim").quotes(sorted(instruments))
    Instrument.objects.filter(symbol="MSFT").update(is_active=False)
    seqs = dict(SimQuote.objects.values_list("symbol", "seq"))
    # when
    run("run_market_data", "--steps", "1", "--interval-ms", "1")
    # then
    after = dict(SimQuote.objects.values_list("symbol", "seq"))
    assert after == {s: seq + (0 if s == "MSFT" else 1) for s, seq in seqs.items()}


def test_run_market_data_keeps_going_after_a_failed_step(instruments, published, monkeypatch):
    # given a venue whose first step fails
    venue = venue_for("sim")
    venue.quotes(sorted(instruments))
    seqs = dict(SimQuote.objects.values_list("symbol", "seq"))
    real_step = venue.step_market
    calls = []

    def flaky(symbols):
        calls.append(list(symbols))
        if len(calls) == 1:
            raise RuntimeError("database briefly unavailable")
        return real_step(symbols)

    monkeypatch.setattr(venue, "step_market", flaky)
    # when
    run("run_market_data", "--steps", "3", "--interval-ms", "1")
    # then the two later steps ran
    assert len(calls) == 3
    assert dict(SimQuote.objects.values_list("symbol", "seq")) == {
        symbol: seq + 2 for symbol, seq in seqs.items()
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be a positive number"),
        (["--interval-ms", "0"], "--interval-ms must be a positive number of milliseconds"),
    ],
)
def test_run_market_data_refuses_bad_options(db, args, message):
    with pytest.raises(CommandError, match=message):
        run("run_market_data", *args)


def test_run_market_data_fill_reaches_our_order_through_the_poll(trader, instruments, published):
    # given our resting buy limit at the sim venue, below a hand-set wide EUR_USD quote
    limit = wide_eur_usd_book(venue_for("sim"))
    order = resting_buy("md-ours-1", limit)
    assert order.status == "acknowledged"
    # when the market steps and the published poll runs
    run("run_market_data", "--steps", "1", "--interval-ms", "1")
    assert [name for name, _ in published] == ["orders.poll_venues"]
    venue_poll(venue_name="sim")
    # then our order is filled at its limit
    order.refresh_from_db()
    assert (order.status, order.filled_quantity, order.average_fill_price) == (
        "filled",
        D("1000"),
        limit,
    )
    assert list(order.fills.values_list("quantity", "price", "liquidity")) == [
        (D("1000"), limit, "maker")
    ]


def test_the_autovacuum_check_says_what_the_server_runs(db):
    from django.db import connection

    from orders.checks import postgres_runs_autovacuum

    found = postgres_runs_autovacuum(databases=["default"])
    if connection.vendor != "postgresql":
        assert found == []
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        (value,) = cursor.fetchone()
    assert [w.id for w in found] == ([] if value == "on" else ["orders.W001"])
    assert postgres_runs_autovacuum(databases=None) == []  # not asked to look at a database
