"""A limit that reads what the account's other orders change (its open orders, its
positions) holds when orders of the account are submitted at once: they are checked one
after the other (risk.services.limits_checked), each against the ones stored before it.
On real PostgreSQL, with a thread and a connection per order."""

import threading
from decimal import Decimal

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext

from orders import services
from orders.models import Account, Order
from orders.validation import OrderTerms
from risk.exceptions import RiskRejected
from risk.models import RiskLimit
from tests.helpers import buy_limit_terms, order_body, submit

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

D = Decimal
SENDERS = 10


def resting(client_order_id: str) -> OrderTerms:
    """A buy of 1,000 far below the market: it rests."""
    return buy_limit_terms(D("1.00000"), client_order_id)


def send_together(account, user, senders=SENDERS) -> list[str]:
    """`senders` resting buy orders of the account, released together: what each got."""
    start = threading.Barrier(senders)
    answers: list[str] = []

    def send(n: int) -> None:
        try:
            start.wait()
            services.order_submit(
                account=account,
                user=user,
                actor="user:test",
                terms=resting(f"together-{n}"),
            )
            answers.append("stored")
        except RiskRejected:
            answers.append("rejected")
        except Exception as error:  # pragma: no cover - shown in the assertion
            answers.append(repr(error))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def advisory_locks() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        return cursor.fetchone()[0]


@pytest.fixture
def account(trader, instruments, settings):
    settings.RISK_ORDERS_PER_MINUTE = 10**6
    return Account.objects.get(code="ACC-1")


def test_the_open_order_limit_holds_for_orders_sent_at_once(account, trader):
    # given an account allowed five open orders, and none open
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_open_orders", value=D(5))
    # when ten of its orders arrive at once
    answers = send_together(account, trader)
    # then five are stored and five rejected, and five are open
    assert sorted(answers) == ["rejected"] * 5 + ["stored"] * 5, answers
    assert Order.objects.filter(account=account, status="validated").count() == 5
    assert advisory_locks() == 0  # every check lock released


def test_the_position_limit_holds_for_orders_sent_at_once(account, trader):
    # given a position limit of 3,500 units and no position: three orders of 1,000 fit
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_position", value=D(3500))
    # when ten buys of 1,000 arrive at once
    answers = send_together(account, trader)
    # then three are stored: their worst case (3,000 open) is within it, a fourth is not
    assert answers.count("stored") == 3, answers
    assert answers.count("rejected") == 7, answers
    assert advisory_locks() == 0


def test_orders_under_no_such_limit_take_no_lock(account, trader):
    # given only a limit on each order's own terms
    RiskLimit.objects.create(
        scope="account", target="ACC-1", rule="max_order_quantity", value=D(10**6)
    )
    # when orders arrive at once, and one more alone
    assert send_together(account, trader) == ["stored"] * SENDERS
    with CaptureQueriesContext(connection) as alone:
        services.order_submit(
            account=account, user=trader, actor="user:test", terms=resting("alone")
        )
    # then all are stored, and none took the check lock
    assert alone.captured_queries, "the submit's statements are seen"
    assert not [q["sql"] for q in alone.captured_queries if "advisory" in q["sql"]]


def test_an_order_under_such_a_limit_takes_and_releases_the_lock(account, trader):
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_open_orders", value=D(5))
    with CaptureQueriesContext(connection) as alone:
        services.order_submit(account=account, user=trader, actor="user:test", terms=resting("one"))
    locking = [q["sql"] for q in alone.captured_queries if "advisory" in q["sql"]]
    assert [sql.split("(")[0] for sql in locking] == [
        "SELECT pg_advisory_lock",
        "SELECT pg_advisory_unlock",
    ]
    assert advisory_locks() == 0


def test_a_modify_under_such_a_limit_holds_the_lock_until_its_transaction_ends(account, trader):
    # given a resting order under a position limit
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_position", value=D(10**6))
    order = services.order_submit(
        account=account, user=trader, actor="user:test", terms=resting("to-modify")
    ).order
    # when its quantity is modified
    with CaptureQueriesContext(connection) as modify:
        services.order_modify(order_id=order.pk, actor="user:test", quantity=D("2000"))
    # then the check took the transaction's lock (released with it: none is left)
    locking = [q["sql"] for q in modify.captured_queries if "advisory" in q["sql"]]
    assert [sql.split("(")[0] for sql in locking] == ["SELECT pg_advisory_xact_lock"]
    assert advisory_locks() == 0
    order.refresh_from_db()
    assert order.quantity == D("2000")


def failing(statement: str):
    """An execute wrapper under which the statements containing `statement` fail as a
    dropped connection would."""

    def execute(run, sql, params, many, context):
        if statement in sql:
            raise OperationalError(f"{statement}: server closed the connection unexpectedly")
        return run(sql, params, many, context)

    return execute


def test_a_check_lock_not_taken_refuses_the_order_and_keeps_nothing(api, settings, queued):
    # given one order a minute, a limit that takes the check lock, and a lock that fails
    settings.RISK_ORDERS_PER_MINUTE = 1
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_open_orders", value=D(5))
    with connection.execute_wrapper(failing("pg_advisory_lock")):
        response = api.post("/api/v1/orders/", order_body(), format="json")
    # then the order is refused to be sent again, and nothing is stored, queued or held
    assert response.status_code == 503, response.content
    assert response.json()["error"]["code"] == "risk_unavailable"
    assert not Order.objects.exists()
    assert queued() == []
    assert advisory_locks() == 0
    # and its count was given back: sent again, it is the minute's one order
    submit(api, expect=(201,))


def test_a_snapshot_failing_under_the_check_lock_releases_it(api, monkeypatch, queued):
    # given a limit that takes the check lock, and a snapshot that cannot be read
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_position", value=D(10**6))

    def unreadable(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("risk.selectors.snapshot_for", unreadable)
    response = api.post("/api/v1/orders/", order_body(), format="json")
    # then the order is refused, nothing is stored or queued, and the lock is not held
    assert response.status_code == 503, response.content
    assert not Order.objects.exists()
    assert queued() == []
    assert advisory_locks() == 0


def test_a_check_lock_not_released_closes_the_connection_and_the_order_stands(api, queued):
    # given a limit that takes the check lock, and its release failing
    RiskLimit.objects.create(scope="account", target="ACC-1", rule="max_open_orders", value=D(5))
    with connection.execute_wrapper(failing("pg_advisory_unlock")):
        response = api.post("/api/v1/orders/", order_body(), format="json")
    # then the order stored is answered as stored, once, and queued once; the connection
    # that held the lock was closed, so no lock is left to hold the account's next orders
    assert response.status_code == 201, response.content
    stored = Order.objects.get()
    assert str(stored.id) == response.json()["id"]
    assert queued() == [str(stored.id)]
    assert advisory_locks() == 0
