"""Position arithmetic, average-cost method. Pure: Decimals in, Decimals out.

- A fill that adds to a position (or opens one) moves the average price to the
  quantity-weighted average of the old position and the fill.
- A fill that reduces a position realizes (fill price − average price) × closed quantity
  (negated for a short) and leaves the average price of what remains unchanged.
- A fill that reverses a position (long 100, sell 150) closes the old side at the fill price,
  realizing its P&L, and opens the new side (short 50) at the fill price.
- Unrealized P&L is (mark − average price) × signed quantity.

All amounts are in the instrument's quote currency; converting to the account currency is the
caller's job (it knows the rate at the time).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class PositionState:
    quantity: Decimal = ZERO  # signed: long > 0, short < 0
    average_price: Decimal = ZERO  # of the open quantity; 0 when flat
    realized_pnl: Decimal = ZERO  # cumulative, quote currency


@dataclass(frozen=True)
class FillEffect:
    position: PositionState  # after the fill
    realized: Decimal  # realized by this fill, quote currency
    closed_quantity: Decimal  # how much of the old position this fill closed (>= 0)


def signed(side: str, quantity: Decimal) -> Decimal:
    return quantity if side == "buy" else -quantity


def apply_fill(
    position: PositionState, *, side: str, quantity: Decimal, price: Decimal
) -> FillEffect:
    if quantity <= 0 or price <= 0:
        raise ValueError("a fill has a positive quantity and price")
    delta = signed(side, quantity)
    old = position.quantity
    if old == 0 or (old > 0) == (delta > 0):
        new_quantity = old + delta
        average = (position.average_price * abs(old) + price * quantity) / abs(new_quantity)
        return FillEffect(
            position=PositionState(new_quantity, average, position.realized_pnl),
            realized=ZERO,
            closed_quantity=ZERO,
        )
    closed = min(abs(old), quantity)
    direction = Decimal(1) if old > 0 else Decimal(-1)
    realized = (price - position.average_price) * closed * direction
    new_quantity = old + delta
    if new_quantity == 0:
        average = ZERO
    elif (new_quantity > 0) == (old > 0):
        average = position.average_price  # reduced, same side: the rest keeps its cost
    else:
        average = price  # reversed: the new side opens at the fill price
    return FillEffect(
        position=PositionState(new_quantity, average, position.realized_pnl + realized),
        realized=realized,
        closed_quantity=closed,
    )


def unrealized_pnl(position: PositionState, mark: Decimal) -> Decimal:
    if position.quantity == 0:
        return ZERO
    return (mark - position.average_price) * position.quantity


@dataclass(frozen=True)
class CommissionSchedule:
    """Per venue and asset class: per unit, plus basis points of notional, at least minimum.
    In `currency`, or the instrument's quote currency when empty."""

    per_unit: Decimal = ZERO
    bps: Decimal = ZERO
    minimum: Decimal = ZERO
    currency: str = ""

    def commission(self, *, quantity: Decimal, price: Decimal) -> Decimal:
        amount = self.per_unit * quantity + quantity * price * self.bps / Decimal(10000)
        if amount == 0:
            return ZERO
        return max(amount, self.minimum)
