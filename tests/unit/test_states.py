from itertools import product

import pytest

from orders.states import OPEN, TERMINAL, TRANSITIONS, OrderStatus, can_transition, is_terminal

S = OrderStatus
ALL = list(S)


def test_every_status_has_a_row_in_the_table():
    assert set(TRANSITIONS) == set(ALL)


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_statuses_lead_nowhere(terminal):
    assert all(not can_transition(terminal, other) for other in ALL)
    assert is_terminal(terminal)


def test_open_and_terminal_partition_the_statuses():
    assert OPEN | TERMINAL == set(ALL)
    assert not OPEN & TERMINAL


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.CREATED, S.VALIDATED),
        (S.VALIDATED, S.PENDING_SUBMIT),
        (S.VALIDATED, S.CANCELLED),
        (S.PENDING_SUBMIT, S.ACKNOWLEDGED),
        (S.SUBMITTED, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.PARTIALLY_FILLED),
        (S.PARTIALLY_FILLED, S.FILLED),
        (S.ACKNOWLEDGED, S.PENDING_CANCEL),
        (S.PENDING_CANCEL, S.CANCELLED),
        (S.PENDING_CANCEL, S.FILLED),
        (S.ACKNOWLEDGED, S.EXPIRED),
    ],
)
def test_the_life_of_an_order_is_allowed(current, new):
    assert can_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.CREATED, S.FILLED),
        (S.VALIDATED, S.FILLED),
        (S.VALIDATED, S.ACKNOWLEDGED),
        (S.ACKNOWLEDGED, S.VALIDATED),
        (S.PARTIALLY_FILLED, S.ACKNOWLEDGED),
        (S.FILLED, S.CANCELLED),
        (S.CANCELLED, S.FILLED),
        (S.REJECTED, S.VALIDATED),
    ],
)
def test_skipping_or_going_back_is_refused(current, new):
    assert not can_transition(current, new)


def test_nothing_returns_to_created_or_validated_except_created():
    for current, new in product(ALL, [S.CREATED, S.VALIDATED]):
        if (current, new) == (S.CREATED, S.VALIDATED):
            continue
        assert not can_transition(current, new), (current, new)
