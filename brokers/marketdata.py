"""Last quotes for valuation and currency conversion, from the market-data venue."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.conf import settings

from .base import Quote
from .registry import venue_for


def last_quotes(symbols: Iterable[str], *, venue: str | None = None) -> dict[str, Quote]:
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    return dict(venue_for(venue or settings.MARKET_DATA_VENUE).quotes(wanted))


def conversion_rate(
    from_currency: str,
    to_currency: str,
    *,
    quotes: dict[str, Quote] | None = None,
    venue: str | None = None,
) -> Decimal | None:
    """One unit of `from_currency` in `to_currency`, from the mid of the pair that links them
    (EUR in USD: the EUR_USD mid; JPY in USD: 1 / the USD_JPY mid). None when no listed
    instrument links them. `quotes` is a cache the caller may share between calls."""
    from orders.selectors import instruments_listed

    if from_currency == to_currency:
        return Decimal(1)
    cache = quotes if quotes is not None else {}
    listed = None
    for pair, invert in (
        (f"{from_currency}_{to_currency}", False),
        (f"{to_currency}_{from_currency}", True),
    ):
        if pair not in cache:
            if listed is None:  # one look at the reference data for both pairs
                listed = instruments_listed()
            if pair not in listed:
                continue
            cache.update(last_quotes([pair], venue=venue))
        quote = cache.get(pair)
        if quote is not None:
            return Decimal(1) / quote.mid if invert else quote.mid
    return None
