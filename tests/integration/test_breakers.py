"""Circuit breakers: a simulated loss trips one, it acts once, and resuming re-arms it."""

from decimal import Decimal

import pytest
from django.core import mail

from brokers.registry import venue_for
from orders import services as order_services
from orders.books import account_cash_move
from orders.models import Account, Order
from risk.breakers import breakers_evaluate
from risk.models import BreakerTrip, CircuitBreaker, RiskEvent, TradingState
from risk.services import trading_resume

pytestmark = pytest.mark.django_db

D = Decimal


@pytest.fixture(autouse=True)
def _mail(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.RISK_NOTIFY_EMAILS = ["desk-risk@example.com"]
    settings.COMMISSIONS = {}


def quote(symbol, bid, ask, size="1000"):
    venue_for("sim").set_quote(symbol, bid=D(bid), ask=D(ask), bid_size=D(size), ask_size=D(size))


def order(api, **body):
    response = api.post(
        "/api/v1/orders/", {"account": "ACC-1", "time_in_force": "gtc", **body}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def long_aapl(api):
    account = Account.objects.get(code="ACC-1")
    account_cash_move(account=account, amount=D("100000"), reason="funding", actor="test")
    quote("AAPL", "189.99", "190.00")
    order_services.order_submit_to_venue(
        order_id=order(api, symbol="AAPL", side="buy", type="market", quantity="100")
    )
    return account


def test_a_daily_loss_trips_the_breaker_once_halts_cancels_and_notifies(api, long_aapl):
    # given a breaker at a 100 USD daily loss, and an open order
    CircuitBreaker.objects.create(
        name="acc1-loss",
        kind="daily_loss",
        scope="account",
        target="ACC-1",
        threshold=D("100"),
        actions=["halt", "cancel", "notify"],
    )
    working = order(
        api, symbol="AAPL", side="buy", type="limit", quantity="10", limit_price="180.00"
    )
    assert breakers_evaluate() == []  # down 0.5: fine
    # when the market drops 2 dollars (100 shares: -200)
    quote("AAPL", "187.99", "188.00")
    [trip] = breakers_evaluate()
    # then
    assert trip.observed == D("200.5")
    assert TradingState.objects.get(scope="account", target="ACC-1").mode == "halted"
    assert Order.objects.get(pk=working).status == "cancelled"
    assert RiskEvent.objects.filter(kind="breaker_tripped", actor="breaker:acc1-loss").count() == 1
    assert [m.to for m in mail.outbox] == [["desk-risk@example.com"]]
    assert "acc1-loss" in mail.outbox[0].subject
    assert (
        api.post(
            "/api/v1/orders/",
            {
                "account": "ACC-1",
                "symbol": "AAPL",
                "side": "sell",
                "type": "limit",
                "quantity": "1",
                "limit_price": "200.00",
            },
            format="json",
        ).status_code
        == 423
    )
    state = api.get("/api/v1/risk/state/").json()
    assert [b["name"] for b in state["circuit_breakers"]] == ["acc1-loss"]
    # and the condition still holding trips nothing more: no flapping
    quote("AAPL", "186.99", "187.00")
    assert breakers_evaluate() == []
    assert BreakerTrip.objects.count() == 1 and len(mail.outbox) == 1


def test_resuming_re_arms_the_breaker(api, long_aapl):
    CircuitBreaker.objects.create(
        name="loss",
        kind="daily_loss",
        scope="account",
        target="ACC-1",
        threshold=D("100"),
        actions=["halt"],
    )
    quote("AAPL", "187.99", "188.00")
    assert len(breakers_evaluate()) == 1
    trading_resume(scope="account", target="ACC-1", reason="reviewed", actor="user:rita")
    assert BreakerTrip.objects.get().resolved_by == "user:rita"
    assert TradingState.objects.get(scope="account", target="ACC-1").mode == "active"
    # still losing: it trips again, once
    assert len(breakers_evaluate()) == 1
    assert len(breakers_evaluate()) == 0


def test_position_size_breaker_can_only_notify(api, long_aapl):
    CircuitBreaker.objects.create(
        name="big",
        kind="position_size",
        scope="symbol",
        target="AAPL",
        threshold=D("100"),
        actions=["notify"],
    )
    [trip] = breakers_evaluate()
    assert trip.observed == D("100")
    assert TradingState.objects.filter(mode="halted").count() == 0
    assert len(mail.outbox) == 1


def test_drawdown_from_the_days_peak(api, long_aapl):
    CircuitBreaker.objects.create(
        name="dd",
        kind="drawdown",
        scope="account",
        target="ACC-1",
        threshold=D("1"),
        actions=["halt"],
    )
    quote("AAPL", "199.99", "200.00")  # equity peaks near 100,999.5
    assert breakers_evaluate() == []
    quote("AAPL", "189.99", "190.00")  # back down by ~1,000: just under 1 %
    assert breakers_evaluate() == []
    quote("AAPL", "188.99", "189.00")  # ~1.09 % below the peak
    [trip] = breakers_evaluate()
    assert D("1") < trip.observed < D("1.2")


def test_a_drawdown_begun_before_a_redis_restart_is_measured_from_the_days_peak(
    api, long_aapl, settings
):
    # given a drawdown breaker that has seen the day's peak
    import redis

    breaker = CircuitBreaker.objects.create(
        name="dd", kind="drawdown", scope="account", target="ACC-1", threshold=D("1"),
        actions=["halt"],
    )  # fmt: skip
    quote("AAPL", "199.99", "200.00")  # equity peaks near 100,999.5
    assert breakers_evaluate() == []
    # when Redis restarts (this project's keeps nothing on disk) and the market falls
    redis.Redis.from_url(settings.REDIS_URL).flushdb()
    quote("AAPL", "188.99", "189.00")  # ~1.09 % below the peak
    # then the fall is measured from the peak seen before, and trips
    [trip] = breakers_evaluate()
    assert D("1") < trip.observed < D("1.2")
    assert D(trip.detail["peak"]) == breaker.peaks.get().peak


def test_reject_rate_over_a_window(api, long_aapl):
    from risk.models import RiskLimit

    CircuitBreaker.objects.create(
        name="rejects",
        kind="reject_rate",
        scope="account",
        target="ACC-1",
        threshold=D("50"),
        window_seconds=60,
        actions=["halt"],
    )
    RiskLimit.objects.create(
        scope="account", target="ACC-1", rule="max_order_quantity", value=D("5")
    )
    for n in range(10):
        api.post(
            "/api/v1/orders/",
            {
                "account": "ACC-1",
                "symbol": "AAPL",
                "side": "buy",
                "type": "limit",
                "quantity": "10" if n < 6 else "1",
                "limit_price": "180.00",
            },
            format="json",
        )
    [trip] = breakers_evaluate()
    # 11 orders in the window (the fixture's fill and these 10), 6 refused
    assert trip.detail == {"total": 11, "rejected": 6}
    assert trip.observed == (D(6) / D(11) * 100).quantize(D("1e-10"))


def test_volatility_spike_on_a_symbol(api, long_aapl):
    CircuitBreaker.objects.create(
        name="vol",
        kind="volatility",
        scope="symbol",
        target="AAPL",
        threshold=D("2"),
        window_seconds=60,
        actions=["halt"],
    )
    assert breakers_evaluate() == []  # first sample
    quote("AAPL", "199.99", "200.00")  # +5.3 %
    [trip] = breakers_evaluate()
    assert TradingState.objects.get(scope="symbol", target="AAPL").mode == "halted"
    assert trip.observed > D("5")


def test_webhook_notifier_posts_json_and_a_broken_channel_does_not_stop_the_others(settings):
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from risk.notify import notify

    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.handle_request, daemon=True).start()
    settings.RISK_NOTIFY_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    settings.RISK_NOTIFIERS = [
        "risk.notify.LogNotifier",
        "risk.notify.NoSuchNotifier",
        "risk.notify.EmailNotifier",
        "risk.notify.WebhookNotifier",
    ]
    failed = notify("breaker tripped", "daily loss", {"breaker": "loss"})
    server.server_close()
    assert failed == ["risk.notify.NoSuchNotifier"]
    assert received == [
        {"subject": "breaker tripped", "body": "daily loss", "data": {"breaker": "loss"}}
    ]
    assert len(mail.outbox) == 1


def test_risk_admin_pages_and_halt_action(admin_client, instruments):
    from risk.models import TradingState

    for url in (
        "/admin/risk/risklimit/",
        "/admin/risk/tradingstate/",
        "/admin/risk/riskevent/",
        "/admin/risk/circuitbreaker/",
        "/admin/risk/breakertrip/",
        "/admin/risk/ratelimitoverride/",
        "/admin/orders/position/",
        "/admin/orders/accountsnapshot/",
        "/admin/orders/cashmovement/",
    ):
        assert admin_client.get(url).status_code == 200, url
    state = TradingState.objects.get(scope="global")
    response = admin_client.post(
        "/admin/risk/tradingstate/", {"action": "halt_selected", "_selected_action": [state.pk]}
    )
    assert response.status_code == 302
    state.refresh_from_db()
    assert state.mode == "halted"
    assert RiskEvent.objects.get(kind="halt").actor == "admin:admin"


def test_a_burst_of_fills_asks_for_one_breaker_evaluation(monkeypatch):
    from django.core.cache import cache

    from orders import services as order_services

    published = []
    monkeypatch.setattr(
        "orders.outbox.publish_now", lambda task, **kw: published.append((task, kw))
    )
    cache.delete(order_services.BREAKER_KICK_KEY)
    monkeypatch.setattr(order_services, "_breakers_kicked_at", float("-inf"))
    asked = []
    add = cache.add
    monkeypatch.setattr(cache, "add", lambda *a, **kw: asked.append(a) or add(*a, **kw))
    for _ in range(5):
        order_services._breakers_kick()
    assert published == [("risk.evaluate_breakers", {})]
    assert len(asked) == 1  # the process asked Redis once, not after every fill
    # another process kicked a moment ago: this one's first fill asks, and publishes nothing
    monkeypatch.setattr(order_services, "_breakers_kicked_at", float("-inf"))
    order_services._breakers_kick()
    assert published == [("risk.evaluate_breakers", {})] and len(asked) == 2
    # a second later the next fill kicks again
    monkeypatch.setattr(order_services, "_breakers_kicked_at", float("-inf"))
    cache.delete(order_services.BREAKER_KICK_KEY)
    order_services._breakers_kick()
    assert len(published) == 2
