"""The order state machine: the one place that says which status may follow which.

    created -> validated -> pending_submit -> submitted -> acknowledged
            -> partially_filled -> filled, plus pending_cancel, cancelled, rejected, expired.

Terminal: filled, cancelled, rejected, expired. A transition not in TRANSITIONS raises
InvalidTransition before anything is written.
"""

from django.db import models


class OrderStatus(models.TextChoices):
    CREATED = "created"
    VALIDATED = "validated"
    PENDING_SUBMIT = "pending_submit"
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


S = OrderStatus


class EventType(models.TextChoices):
    """Every type of OrderEvent the services write (`orders.services`; the bench's growth
    generator writes the same). The admin's event list offers these as its type filter
    instead of reading the distinct types of the whole audit trail on every page; the test
    suite's replay check (tests/conftest.py) fails on an event of a type not listed here."""

    CREATED = "created"
    VALIDATED = "validated"
    RISK_REJECTED = "risk_rejected"
    PENDING_SUBMIT = "pending_submit"
    # The state table's `submitted` (sent, not yet acknowledged), for a venue that reports it.
    SUBMITTED = "submitted"
    ACKNOWLEDGED = "acknowledged"
    FILL = "fill"
    LATE_FILL = "late_fill"
    MODIFY_REQUESTED = "modify_requested"
    MODIFIED = "modified"
    MODIFY_REJECTED = "modify_rejected"
    PENDING_CANCEL = "pending_cancel"
    CANCEL_REJECTED = "cancel_rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    PARKED = "parked"


TERMINAL: frozenset[str] = frozenset({S.FILLED, S.CANCELLED, S.REJECTED, S.EXPIRED})

# Working at the venue (or about to be): what cancel-all, expiry and polling look at.
OPEN: frozenset[str] = frozenset(
    {
        S.CREATED,
        S.VALIDATED,
        S.PENDING_SUBMIT,
        S.SUBMITTED,
        S.ACKNOWLEDGED,
        S.PARTIALLY_FILLED,
        S.PENDING_CANCEL,
    }
)
# The open statuses as SQL literals, for statements that must let the planner prove the
# condition of the open orders' partial index (order_open_account_created): a prepared
# statement's generic plan is blind to its parameters, so `status IN ($1, ...)` cannot use it.
OPEN_LITERALS = ", ".join(f"'{status}'" for status in sorted(OPEN))

# A live order the venue knows about (so a cancel or modify goes to the venue).
AT_VENUE: frozenset[str] = frozenset({S.SUBMITTED, S.ACKNOWLEDGED, S.PARTIALLY_FILLED})

TRANSITIONS: dict[str, frozenset[str]] = {
    S.CREATED: frozenset({S.VALIDATED, S.REJECTED}),
    # validated: stored and queued, not yet sent; a cancel here never reaches the venue.
    S.VALIDATED: frozenset({S.PENDING_SUBMIT, S.CANCELLED, S.REJECTED, S.EXPIRED}),
    # pending_submit: a worker is talking to the venue; the outcome is unknown until it answers.
    S.PENDING_SUBMIT: frozenset(
        {
            S.SUBMITTED,
            S.ACKNOWLEDGED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.REJECTED,
            S.CANCELLED,
            S.PENDING_CANCEL,
            S.EXPIRED,
        }
    ),
    S.SUBMITTED: frozenset(
        {
            S.ACKNOWLEDGED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.REJECTED,
            S.PENDING_CANCEL,
            S.CANCELLED,
            S.EXPIRED,
        }
    ),
    S.ACKNOWLEDGED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELLED, S.EXPIRED}
    ),
    S.PARTIALLY_FILLED: frozenset(
        {S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELLED, S.EXPIRED}
    ),
    # pending_cancel: fills may still arrive; a refused cancel returns to the working status.
    S.PENDING_CANCEL: frozenset(
        {
            S.CANCELLED,
            S.PARTIALLY_FILLED,
            S.FILLED,
            S.EXPIRED,
            S.REJECTED,
            S.ACKNOWLEDGED,
            S.PENDING_CANCEL,
        }
    ),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def is_terminal(status: str) -> bool:
    return status in TERMINAL
