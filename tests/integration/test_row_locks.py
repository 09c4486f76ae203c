"""The row locks a worker takes on what it is about to update (`tradingsite.bulk.row_lock`):
they keep every other updater out, and leave alone the inserts that merely refer to the
locked rows. A web request accepting an order for an account checks the account's key
(`FOR KEY SHARE`); with `FOR UPDATE` on the account it waited for the worker's whole
transaction booking a fill there."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection, transaction

from orders.books import _accounts_locked
from orders.lock_objects import orders_and_backlog_for_update, orders_for_update
from orders.models import Order
from tests.integration.test_batch_submission import validated
from tests.integration.test_books import funded_account
from tests.integration.test_books_concurrency import Holder

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def account(instruments, settings):
    settings.RISK_ORDERS_PER_MINUTE = 10**6
    return funded_account()


def lock_timeout(value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SET lock_timeout = '{value}'")


@pytest.fixture
def impatient():
    """This connection gives up on a row lock after 3 s instead of waiting for the holder."""
    lock_timeout("3s")
    yield
    lock_timeout("0")


def test_an_order_is_accepted_while_a_worker_holds_its_account_and_orders(account, impatient):
    # given a worker booking a fill: the account and one of its orders locked
    first = validated(account, 1)[0]
    holder = Holder(lambda: (_accounts_locked({account.pk}), orders_for_update([first])))
    try:
        # when a client submits another order on that account (its key checked by the insert)
        second = validated(account, 1)[0]  # FOR UPDATE on the account: LockNotAvailable in 3 s
    finally:
        holder.done()
    # then it is stored and validated, without waiting for the worker's commit
    assert Order.objects.get(pk=second).status == "validated"


def test_a_second_updater_still_waits_for_the_account(account, impatient):
    holder = Holder(lambda: _accounts_locked({account.pk}))
    try:
        lock_timeout("200ms")
        with pytest.raises(OperationalError, match="lock timeout"), transaction.atomic():
            _accounts_locked({account.pk})
    finally:
        holder.done()


def test_a_claim_still_waits_for_its_own_order_and_skips_a_held_one(account, impatient):
    own, held = validated(account, 2)
    holder = Holder(lambda: orders_for_update([own, held]))
    try:
        lock_timeout("200ms")
        with pytest.raises(OperationalError, match="lock timeout"), transaction.atomic():
            orders_and_backlog_for_update([own], limit=10)
        lock_timeout("3s")
        with transaction.atomic():  # a drain: no own orders, the held backlog skipped
            mine, taken, _ = orders_and_backlog_for_update([], limit=10)
        assert (mine, taken) == ([], [])
    finally:
        holder.done()
