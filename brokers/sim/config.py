"""How the simulated market moves, per asset class: spread, step and displayed size.

A symbol's tick, lot and starting mid come from its instrument (orders.selectors); the
shape of its walk from its asset class. Values are chosen to look like a liquid market:
EUR_USD one pip wide, an equity one cent wide, BTC one dollar wide.
"""

from __future__ import annotations

from decimal import Decimal

from orders.selectors import instrument_by_symbol

from .engine import WalkSpec

# asset class -> (spread in ticks, largest step in ticks, typical top-of-book size)
WALK_SHAPES: dict[str, tuple[int, int, Decimal]] = {
    "fx": (10, 5, Decimal("1000000")),
    "equity": (1, 3, Decimal("500")),
    "crypto": (100, 500, Decimal("2")),
}
DEFAULT_SHAPE = (2, 2, Decimal("100"))

_cache: dict[str, WalkSpec] = {}


def walk_spec_for(symbol: str) -> WalkSpec:
    spec = _cache.get(symbol)
    if spec is not None:
        return spec
    instrument = instrument_by_symbol(symbol)
    if instrument is None:
        raise LookupError(f"no instrument {symbol!r}")
    spread, step, size = WALK_SHAPES.get(instrument.asset_class, DEFAULT_SHAPE)
    start = instrument.reference_price or instrument.tick_size * 10000
    spec = WalkSpec(
        symbol=symbol,
        tick=instrument.tick_size.normalize(),
        lot=instrument.lot_size.normalize(),
        start_mid=start,
        spread_ticks=spread,
        max_step_ticks=step,
        size=max(size, instrument.lot_size),
    )
    _cache[symbol] = spec
    return spec


def clear_cache() -> None:
    _cache.clear()
