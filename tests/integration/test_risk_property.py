"""The promise of the gate, end to end through the services and the simulated venue: no order
that breaches a configured limit is ever sent to the venue."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.models import SimOrder
from brokers.registry import venue_for
from orders import services
from orders.exceptions import ApplicationError
from orders.models import Account, Position
from orders.validation import OrderTerms
from risk.models import RiskLimit

pytestmark = pytest.mark.django_db

D = Decimal
PRICES = {"AAPL": D("190.00"), "MSFT": D("420.00")}

orders_strategy = st.lists(
    st.tuples(
        st.sampled_from(["AAPL", "MSFT"]),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["market", "limit"]),
        st.integers(min_value=1, max_value=400),
        st.integers(min_value=-300, max_value=300),  # limit price offset in cents
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    max_quantity=st.integers(min_value=1, max_value=400),
    max_notional=st.integers(min_value=1000, max_value=80000),
    max_position=st.integers(min_value=1, max_value=500),
    blocked=st.sampled_from(["", "MSFT"]),
    orders=orders_strategy,
)
def test_no_order_breaching_a_limit_reaches_the_venue(
    trader, instruments, max_quantity, max_notional, max_position, blocked, orders
):
    # given limits and a market
    SimOrder.objects.all().delete()
    RiskLimit.objects.all().delete()
    account = Account.objects.get(code="ACC-1")
    for symbol, price in PRICES.items():
        venue_for("sim").set_quote(
            symbol, bid=price - D("0.01"), ask=price, bid_size=D("100000"), ask_size=D("100000")
        )
    for rule, value in (
        ("max_order_quantity", max_quantity),
        ("max_order_notional", max_notional),
        ("max_position", max_position),
    ):
        RiskLimit.objects.create(scope="account", target="ACC-1", rule=rule, value=D(value))
    if blocked:
        RiskLimit.objects.create(
            scope="global", rule="symbol_blocked", value=D(1), symbols=[blocked]
        )
    sent_before = set(SimOrder.objects.values_list("client_order_id", flat=True))
    # (hypothesis runs its examples in one test: the books carry over from the last one)
    starting = dict(
        Position.objects.filter(account=account, strategy_id="").values_list(
            "instrument__symbol", "quantity"
        )
    )
    # when every order is submitted and whatever is accepted is sent at once
    for symbol, side, order_type, quantity, offset in orders:
        limit_price = PRICES[symbol] + D(offset) / 100 if order_type == "limit" else None
        try:
            result = services.order_submit(
                account=account,
                user=None,
                actor="test",
                terms=OrderTerms(
                    symbol=symbol,
                    side=side,
                    type=order_type,
                    time_in_force="ioc",
                    quantity=D(quantity),
                    limit_price=limit_price,
                ),
            )
        except ApplicationError:
            continue
        services.order_submit_to_venue(order_id=result.order.id)
    # then every order the venue saw respects every limit, positions included
    positions = dict(starting)
    for sim in SimOrder.objects.exclude(client_order_id__in=sent_before).order_by("id"):
        price = sim.limit_price or PRICES[sim.symbol]
        assert sim.quantity <= max_quantity
        assert sim.quantity * price <= max_notional
        assert sim.symbol != blocked
        signed = sim.quantity if sim.side == "buy" else -sim.quantity
        before = positions.get(sim.symbol, D(0))
        after = before + signed
        assert abs(after) <= max_position or abs(after) < abs(before)
        filled = sim.filled_quantity if sim.side == "buy" else -sim.filled_quantity
        positions[sim.symbol] = before + filled
