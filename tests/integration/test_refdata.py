"""The reference-data cache (tradingsite/refdata.py): whoever writes a cached table, the next
request sees it; writes that do not change what is cached leave the cache alone."""

from decimal import Decimal

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from orders.models import Account, Instrument
from risk.models import RateLimitOverride, RiskLimit, TradingState
from tests.helpers import LIMIT_ORDER
from tradingsite import refdata

pytestmark = pytest.mark.django_db

BODY = LIMIT_ORDER


def version() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT version FROM refdata_version WHERE id = 1")
        return cursor.fetchone()[0]


def moves(write) -> bool:
    before = version()
    write()
    return version() != before


def test_every_cached_table_moves_the_version(trader, instruments):
    account = Account.objects.get(code="ACC-1")
    user = get_user_model().objects.get(pk=trader.pk)
    writes = {
        "limit": lambda: RiskLimit.objects.create(
            rule="max_order_quantity", value=Decimal(5), scope="global"
        ),
        "limit update": lambda: RiskLimit.objects.update(value=Decimal(6)),
        "state": lambda: TradingState.objects.update_or_create(
            scope="account", target="ACC-1", defaults={"mode": "halted"}
        ),
        "override": lambda: RateLimitOverride.objects.create(user=user, orders_per_minute=3),
        "instrument": lambda: Instrument.objects.filter(symbol="EUR_USD").update(is_active=False),
        "grant": lambda: account.users.remove(user),
        "account status": lambda: Account.objects.filter(pk=account.pk).update(is_active=False),
        "token": lambda: Token.objects.filter(user=user).delete(),
        "user status": lambda: get_user_model().objects.filter(pk=user.pk).update(is_active=False),
        "limit delete": lambda: RiskLimit.objects.all().delete(),
    }
    assert {name: moves(write) for name, write in writes.items()} == dict.fromkeys(writes, True)


def test_writes_that_leave_cached_data_alone_keep_the_version(trader):
    account = Account.objects.get(code="ACC-1")
    # every fill moves cash; every login moves last_login
    assert not moves(lambda: Account.objects.filter(pk=account.pk).update(cash=Decimal(7)))
    assert not moves(
        lambda: get_user_model().objects.filter(pk=trader.pk).update(last_login=timezone.now())
    )


def test_a_rolled_back_version_is_never_used_again(trader):
    with pytest.raises(RuntimeError), transaction.atomic():
        RiskLimit.objects.create(rule="max_order_quantity", value=Decimal(5), scope="global")
        rolled_back = version()
        raise RuntimeError
    RiskLimit.objects.create(rule="max_order_quantity", value=Decimal(5), scope="global")
    assert version() != rolled_back


# Each change below is written with QuerySet.update/delete or raw SQL, as another process would:
# no signal reaches this process's cache, only the version row.


def test_a_halt_refuses_the_next_order(api):
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201
    TradingState.objects.filter(scope="global").update(mode="halted", reason="test")
    response = api.post("/api/v1/orders/", BODY, format="json")
    assert response.status_code == 423, response.json()
    TradingState.objects.filter(scope="global").update(mode="active")
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201


def test_a_new_limit_applies_to_the_next_order(api):
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201
    RiskLimit.objects.bulk_create(
        [RiskLimit(rule="max_order_quantity", value=Decimal(10), scope="account", target="ACC-1")]
    )
    response = api.post("/api/v1/orders/", BODY, format="json")
    assert response.status_code == 422, response.json()


def test_a_revoked_token_and_a_deactivated_user_are_refused_at_once(api, trader):
    assert api.get("/api/v1/orders/").status_code == 200
    get_user_model().objects.filter(pk=trader.pk).update(is_active=False)
    assert api.get("/api/v1/orders/").status_code == 401
    get_user_model().objects.filter(pk=trader.pk).update(is_active=True)
    assert api.get("/api/v1/orders/").status_code == 200
    Token.objects.filter(user=trader).delete()
    assert api.get("/api/v1/orders/").status_code == 401


def test_a_withdrawn_account_grant_refuses_the_next_order(api, trader):
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201
    Account.users.through.objects.filter(user_id=trader.pk).delete()
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 404


def test_a_deactivated_instrument_refuses_the_next_order(api):
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201
    Instrument.objects.filter(symbol="EUR_USD").update(is_active=False)
    response = api.post("/api/v1/orders/", BODY, format="json")
    assert response.status_code == 400, response.json()


def test_a_rate_limit_override_applies_to_the_next_order(api, trader):
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201
    RateLimitOverride.objects.bulk_create([RateLimitOverride(user=trader, orders_per_minute=1)])
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 429


def test_the_cached_account_carries_no_money(api, trader):
    """Cash moves on every fill without moving the version: the cache must not hold it."""
    assert api.post("/api/v1/orders/", BODY, format="json").status_code == 201
    Account.objects.filter(code="ACC-1").update(cash=Decimal("123.45"))
    from orders import selectors

    assert selectors.account_tradable(trader, "ACC-1").cash == Decimal("123.45")


def test_a_request_sees_its_own_writes(trader):
    """Inside one scope the version is read once; an ORM write in this process reads it again."""
    from risk import selectors

    with refdata.scope():
        assert selectors.trading_state_for(account="ACC-1", strategy_id="", symbol="X") is None
        TradingState.objects.update_or_create(
            scope="account", target="ACC-1", defaults={"mode": "halted"}
        )
        state = selectors.trading_state_for(account="ACC-1", strategy_id="", symbol="X")
    assert state is not None and state.mode == "halted"


@pytest.mark.postgres
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_halt_written_elsewhere_reaches_a_running_web_process(trader, instruments):
    from tests.workers import WebProcess

    web = WebProcess()
    headers = {"Authorization": f"Token {trader.auth_token.key}"}

    def post(n: int) -> int:
        body = {**BODY, "client_order_id": f"web-{n}"}
        return httpx.post(f"{web.url}/api/v1/orders/", headers=headers, json=body, timeout=10)

    try:
        assert post(1).status_code == 201
        assert post(2).status_code == 201  # the process's cache is warm
        # (this process's signals cannot reach the web process: only the version row can)
        TradingState.objects.update_or_create(
            scope="global", target="", defaults={"mode": "halted", "reason": "elsewhere"}
        )
        assert post(3).status_code == 423
        TradingState.objects.filter(scope="global").update(mode="active")
        assert post(4).status_code == 201
    finally:
        web.stop()
