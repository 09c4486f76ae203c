"""`make bench`: the cost of the pre-trade risk gate per order, next to the submit latency, and
how a submit under limits grows with the account's open orders.

Run by `make bench` (python -m tests with python_files=bench_*.py), on the same database and
Redis choice as `make test`. Prints median and p99 in microseconds and writes
bench/results-risk.json. Figures depend on the machine: compare ratios from one run
(../shared/LIMITS.md: PostgreSQL single-row INSERT+COMMIT ~250 us on this machine kind).
"""

import json
import statistics
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from brokers.registry import venue_for
from orders import services
from orders.models import Account, Order
from orders.states import OPEN, OrderStatus
from orders.validation import OrderTerms
from risk import checks
from risk import services as risk_services
from risk.models import RiskLimit

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results-risk.json"
# LIMITS.md, measured on this machine kind: the floor one order's INSERT+COMMIT sits on.
PG_SINGLE_INSERT_US = 250


def _timed(call, runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return {
        "median_us": round(statistics.median(samples), 1),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1], 1),
        "runs": runs,
    }


EIGHT_LIMITS = (
    ("max_order_quantity", "1000000"),
    ("max_order_notional", "5000000"),
    ("max_position", "50000000"),
    ("max_open_orders", "100000"),
    ("price_collar_pct", "5"),
    ("max_gross_exposure", "50000000000"),
    ("max_daily_loss", "100000"),
    ("buying_power", "1"),
)
# What the snapshot reads of the open orders depends on the rules (docs/risk.md): a count, the
# order's instrument's sums, or every instrument's (the books).
LIMIT_SETS = {
    "max_open_orders": (("max_open_orders", "100000"),),
    "max_position": (("max_position", "50000000"),),
    "8_limits": EIGHT_LIMITS,
}
OPEN_ORDER_LEVELS = (2_000, 10_000)


def _limits(limits=EIGHT_LIMITS) -> None:
    RiskLimit.objects.filter(scope="account", target="ACC-1").delete()
    for rule, value in limits:
        RiskLimit.objects.create(scope="account", target="ACC-1", rule=rule, value=D(value))


def _rest_until(account: Account, like: Order, count: int) -> int:
    """Copies of the resting order `like` (their own ids and client order ids, acknowledged by
    the venue) until the account has `count` open orders: stored directly, as many as a desk
    leaves working."""
    have = Order.objects.filter(account=account, status__in=OPEN).count()
    copies = []
    for n in range(count - have):
        copy = Order(**{f.attname: getattr(like, f.attname) for f in Order._meta.concrete_fields})
        copy.id, copy.client_order_id = uuid.uuid4(), f"resting-{have + n}"
        copy.status = OrderStatus.ACKNOWLEDGED
        copies.append(copy)
    Order.objects.bulk_create(copies, batch_size=2000)
    if connection.vendor == "postgresql":  # the planner sees the account's open orders
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE orders_order")
    return Order.objects.filter(account=account, status__in=OPEN).count()


def test_risk_gate_cost(trader, instruments, capsys):
    account = Account.objects.get(code="ACC-1")
    from orders.books import account_cash_move

    account_cash_move(account=account, amount=D("10000000"), reason="bench", actor="bench")
    venue_for("sim").set_quote(
        "EUR_USD",
        bid=D("1.08490"),
        ask=D("1.08500"),
        bid_size=D("10000000"),
        ask_size=D("10000000"),
    )
    settings.RISK_ORDERS_PER_MINUTE = 10**9
    counter = iter(range(10**9))

    def submit():
        services.order_submit(
            account=account,
            user=trader,
            actor="bench",
            terms=OrderTerms(
                symbol="EUR_USD",
                side="buy",
                type="limit",
                time_in_force="gtc",
                quantity=D("1000"),
                limit_price=D("1.08000"),
                client_order_id=f"bench-{next(counter)}",
            ),
        )

    gate = risk_services.GateRequest(
        account=account,
        instrument=instruments["EUR_USD"],
        side="buy",
        type="limit",
        quantity=D("1000"),
        limit_price=D("1.08000"),
        stop_price=None,
        strategy_id="",
        venue="sim",
    )

    submit_no_limits = _timed(submit, 300)
    _limits()
    submit_with_limits = _timed(submit, 300)
    snapshot_and_checks = _timed(
        lambda: risk_services.order_limit_breaches(gate, reducing=False), 300
    )
    snapshot = __import__("risk.selectors", fromlist=["snapshot_for"]).snapshot_for(
        account=account,
        instrument=instruments["EUR_USD"],
        strategy_id="",
        venue="sim",
        limits=__import__("risk.selectors", fromlist=["limits_for"]).limits_for(
            account="ACC-1", strategy_id="", symbol="EUR_USD"
        ),
        reducing=False,
    )
    proposed = checks.ProposedOrder(
        account="ACC-1",
        symbol="EUR_USD",
        side="buy",
        type="limit",
        quantity=D("1000"),
        tick_size=D("0.00001"),
        limit_price=D("1.08000"),
    )
    pure = _timed(lambda: checks.check_order(proposed, snapshot), 5000)

    # The same submit under each set of limits, with the open orders the account has so far
    # (the submits above left theirs resting), then with 2,000 and 10,000: all of them in the
    # order's instrument, the worst case for the position rules' read.
    like = Order.objects.filter(account=account, status__in=OPEN).first()
    by_open_orders: dict[str, dict[str, dict[str, float]]] = {}
    for level in (0, *OPEN_ORDER_LEVELS):
        open_now = _rest_until(account, like, level)
        for name, limits in LIMIT_SETS.items():
            _limits(limits)
            by_open_orders.setdefault(name, {})[str(open_now)] = _timed(submit, 100)
    _limits()
    # the copies have no events of their own (the suite's replay check would refuse them)
    Order.objects.filter(account=account, client_order_id__startswith="resting-").delete()

    figures = {
        "risk_check_pure_us": pure,
        "risk_gate_with_snapshot_us": snapshot_and_checks,
        "submit_without_limits_us": submit_no_limits,
        "submit_with_8_limits_us": submit_with_limits,
        # {limit set: {open orders of the account: the submit's median and p99}}
        "submit_by_open_orders_us": by_open_orders,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "limits": {"pg_single_insert_us": PG_SINGLE_INSERT_US},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))
    with capsys.disabled():
        print("\nrisk gate cost per order (in-process, one client)")
        print(f"{'what':<42}{'median us':>12}{'p99 us':>12}")
        for name in (
            "risk_check_pure_us",
            "risk_gate_with_snapshot_us",
            "submit_without_limits_us",
            "submit_with_8_limits_us",
        ):
            row = figures[name]
            print(f"{name:<42}{row['median_us']:>12}{row['p99_us']:>12}")
        print("\nsubmit under limits by the account's open orders (median / p99 us)")
        levels = list(next(iter(by_open_orders.values())))
        print(f"{'limits':<20}" + "".join(f"{level + ' open':>22}" for level in levels))
        for name, row in by_open_orders.items():
            cells = (f"{row[lv]['median_us']:.0f} / {row[lv]['p99_us']:.0f}" for lv in levels)
            print(f"{name:<20}" + "".join(f"{cell:>22}" for cell in cells))
        print(f"machine floor: one PostgreSQL INSERT+COMMIT ~{PG_SINGLE_INSERT_US} us (LIMITS.md)")
        print(f"written to {RESULTS}")
    assert pure["runs"] == 5000
