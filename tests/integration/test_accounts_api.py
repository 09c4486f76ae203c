"""Positions and accounts through the API, marked to the simulated market."""

from decimal import Decimal

import pytest
from django.core.management import call_command

from brokers.registry import venue_for
from orders import services
from orders.books import account_cash_move
from orders.models import Account, AccountSnapshot, Position
from orders.valuation import account_snapshots_take
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture
def long_aapl(api, settings):
    """ACC-1: 1,000,000 USD deposited, then bought 100 AAPL at 190.00 (commission 1)."""
    settings.COMMISSIONS = {"sim": {"equity": {"per_unit": "0.005", "minimum": "1"}}}
    account = Account.objects.get(code="ACC-1")
    account_cash_move(account=account, amount=D("1000000"), reason="funding", actor="test")
    venue_for("sim").set_quote(
        "AAPL", bid=D("189.99"), ask=D("190.00"), bid_size=D("500"), ask_size=D("500")
    )
    response = api.post(
        "/api/v1/orders/",
        {
            "account": "ACC-1",
            "symbol": "AAPL",
            "side": "buy",
            "type": "market",
            "quantity": "100",
            "time_in_force": "ioc",
        },
        format="json",
    )
    services.order_submit_to_venue(order_id=response.json()["id"])
    return account


def test_the_fill_moved_position_cash_and_commission(long_aapl):
    position = Position.objects.get(account=long_aapl, strategy_id="")
    assert (position.quantity, position.average_price, position.commission) == (
        D("100"),
        D("190"),
        D("1"),
    )
    long_aapl.refresh_from_db()
    assert long_aapl.cash == D("980999")  # 1,000,000 - 19,000 - 1


def test_positions_endpoint_marks_at_the_mid(api, long_aapl):
    [row] = api.get("/api/v1/positions/").json()["results"]
    assert {
        k: row[k]
        for k in (
            "account",
            "symbol",
            "strategy_id",
            "quantity",
            "average_price",
            "currency",
            "realized_pnl",
            "unrealized_pnl",
            "market_price",
            "market_value",
            "commission",
        )
    } == {
        "account": "ACC-1",
        "symbol": "AAPL",
        "strategy_id": "",
        "quantity": "100",
        "average_price": "190.00",
        "currency": "USD",
        "realized_pnl": "0",
        "unrealized_pnl": "-0.5",
        "market_price": "189.995",
        "market_value": "18999.5",
        "commission": "1",
    }
    assert api.get("/api/v1/positions/?symbol=MSFT").json()["results"] == []


def test_account_endpoint_has_equity_buying_power_and_exposure(api, long_aapl):
    body = api.get("/api/v1/accounts/ACC-1/").json()
    assert {
        k: body[k]
        for k in (
            "currency",
            "cash",
            "equity",
            "buying_power",
            "margin_used",
            "realized_pnl_today",
            "daily_pnl",
            "gross_exposure",
            "net_exposure",
            "open_orders",
            "fully_marked",
        )
    } == {
        "currency": "USD",
        "cash": "980999",
        "equity": "999998.5",
        "buying_power": "990498.75",
        "margin_used": "9499.75",
        "realized_pnl_today": "0",
        "daily_pnl": "-1.5",
        "gross_exposure": "18999.5",
        "net_exposure": "18999.5",
        "open_orders": 0,
        "fully_marked": True,
    }
    assert [a["code"] for a in api.get("/api/v1/accounts/").json()["results"]] == ["ACC-1"]


def test_another_traders_account_is_404(long_aapl, other_trader):
    bob = client_for(other_trader)
    assert bob.get("/api/v1/accounts/ACC-1/").status_code == 404
    assert bob.get("/api/v1/positions/?account=ACC-1").json()["results"] == []


def test_daily_snapshot_is_taken_once_per_trading_day(long_aapl):
    assert account_snapshots_take() == 1
    assert account_snapshots_take() == 0
    snapshot = AccountSnapshot.objects.get(account=long_aapl)
    assert (snapshot.cash, snapshot.equity) == (D("980999"), D("999998.5"))


def test_rebuild_from_fills_changes_nothing(long_aapl, capsys):
    call_command("rebuild_positions", "--dry-run")
    assert capsys.readouterr().out.strip().endswith("replayed 1 fills; 0 rows would change")
    call_command("rebuild_positions")
    assert "0 rows changed" in capsys.readouterr().out
