from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from orders.exceptions import OrderValidationError
from orders.validation import InstrumentRules, OrderTerms, day_expiry, validate_terms

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EUR_USD = InstrumentRules("EUR_USD", Decimal("1"), Decimal("1"), Decimal("0.00001"))
BTC_USD = InstrumentRules("BTC_USD", Decimal("0.0001"), Decimal("0.0001"), Decimal("0.01"))


def terms(**overrides) -> OrderTerms:
    values = {
        "symbol": "EUR_USD",
        "side": "buy",
        "type": "limit",
        "time_in_force": "gtc",
        "quantity": Decimal("100000"),
        "limit_price": Decimal("1.08500"),
    }
    values.update(overrides)
    return OrderTerms(**values)


def refused(order_terms: OrderTerms, rules: InstrumentRules = EUR_USD) -> OrderValidationError:
    with pytest.raises(OrderValidationError) as caught:
        validate_terms(order_terms, rules, NOW)
    return caught.value


def test_a_well_formed_limit_order_passes():
    validate_terms(terms(), EUR_USD, NOW)


def test_price_off_the_tick_grid_names_field_and_tick():
    error = refused(terms(limit_price=Decimal("1.085051")))
    assert error.code == "invalid_tick"
    assert error.fields == {"limit_price": ["not a multiple of tick 0.00001"]}
    assert error.message == "limit_price 1.085051 is not a multiple of tick 0.00001"


def test_price_exactly_on_the_grid_passes():
    validate_terms(terms(limit_price=Decimal("1.08501")), EUR_USD, NOW)


def test_quantity_off_the_lot_is_invalid_lot():
    error = refused(terms(quantity=Decimal("100.5")))
    assert (error.code, error.fields) == (
        "invalid_lot",
        {"quantity": ["not a multiple of lot size 1"]},
    )


def test_crypto_lot_of_a_ten_thousandth():
    validate_terms(
        terms(symbol="BTC_USD", quantity=Decimal("0.0001"), limit_price=Decimal("65000.01")),
        BTC_USD,
        NOW,
    )
    assert (
        refused(
            terms(symbol="BTC_USD", quantity=Decimal("0.00015"), limit_price=Decimal("65000.01")),
            BTC_USD,
        ).code
        == "invalid_lot"
    )


def test_below_minimum():
    rules = InstrumentRules("EUR_USD", Decimal("1"), Decimal("1000"), Decimal("0.00001"))
    assert refused(terms(quantity=Decimal("999")), rules).code == "below_minimum"
    validate_terms(terms(quantity=Decimal("1000")), rules, NOW)


@pytest.mark.parametrize(
    "quantity", [Decimal("0"), Decimal("-1"), Decimal("NaN"), Decimal("Infinity")]
)
def test_quantity_must_be_positive_and_finite(quantity):
    assert refused(terms(quantity=quantity)).code == "invalid_quantity"


@pytest.mark.parametrize(
    ("order_type", "limit", "stop", "code", "field"),
    [
        ("limit", None, None, "missing_price", "limit_price"),
        ("stop", None, None, "missing_price", "stop_price"),
        ("stop_limit", Decimal("1.085"), None, "missing_price", "stop_price"),
        ("stop_limit", None, Decimal("1.085"), "missing_price", "limit_price"),
        ("market", Decimal("1.085"), None, "unexpected_field", "limit_price"),
        ("market", None, Decimal("1.085"), "unexpected_field", "stop_price"),
        ("stop", Decimal("1.085"), Decimal("1.085"), "unexpected_field", "limit_price"),
        ("limit", Decimal("1.085"), Decimal("1.085"), "unexpected_field", "stop_price"),
    ],
)
def test_each_type_needs_its_prices_and_no_others(order_type, limit, stop, code, field):
    error = refused(terms(type=order_type, limit_price=limit, stop_price=stop))
    assert error.code == code
    assert list(error.fields) == [field]


def test_zero_or_negative_price():
    assert refused(terms(limit_price=Decimal("0"))).code == "invalid_price"
    assert refused(terms(limit_price=Decimal("-1.08500"))).code == "invalid_price"


def test_gtd_needs_a_future_expire_at():
    assert refused(terms(time_in_force="gtd")).code == "missing_expire_at"
    assert refused(terms(time_in_force="gtd", expire_at=NOW)).code == "invalid_expire_at"
    assert (
        refused(
            terms(time_in_force="gtd", expire_at=NOW.replace(tzinfo=None) + timedelta(hours=1))
        ).code
        == "invalid_expire_at"
    )
    validate_terms(terms(time_in_force="gtd", expire_at=NOW + timedelta(seconds=1)), EUR_USD, NOW)


@pytest.mark.parametrize("tif", ["gtc", "day", "ioc", "fok"])
def test_only_gtd_takes_expire_at(tif):
    error = refused(terms(time_in_force=tif, expire_at=NOW + timedelta(hours=1)))
    assert (error.code, list(error.fields)) == ("unexpected_field", ["expire_at"])


def test_inactive_instrument():
    rules = InstrumentRules(
        "EUR_USD", Decimal("1"), Decimal("1"), Decimal("0.00001"), is_active=False
    )
    assert refused(terms(), rules).code == "instrument_inactive"


def test_day_expiry_is_the_next_cutoff():
    assert day_expiry(NOW, "22:00") == datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    assert day_expiry(NOW.replace(hour=22), "22:00") == datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
    assert day_expiry(NOW.replace(hour=23), "22:00") == datetime(2026, 11, 24, 22, 0, tzinfo=UTC)
