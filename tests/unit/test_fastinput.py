"""tradingsite.fastinput answers exactly what DRF answers for the bodies it takes, and leaves
every other body, and every error, to DRF."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from orders.api.serializers import OrderInputSerializer

SHAPE = OrderInputSerializer()

VALID = {
    "symbol": "EUR_USD",
    "side": "buy",
    "type": "limit",
    "quantity": "1000",
    "limit_price": "1.08500",
}


def drf(body):
    """DRF's own answer: the validated data, or the error detail."""
    try:
        return "ok", serializers.Serializer.run_validation(SHAPE, body)
    except serializers.ValidationError as error:
        return "error", error.detail


def exact(data):
    """Every value with its type and its exact text (Decimal('1.0') != Decimal('1.00') here)."""
    return {key: (type(value), repr(value)) for key, value in data.items()}


def test_a_plain_body_is_answered_directly_as_drf_answers_it():
    for body in (
        VALID,
        {**VALID, "account": "DEMO-1", "client_order_id": "c-1.a:b_2", "time_in_force": "day",
         "strategy_id": "momo 1", "signal_id": "s", "metadata": {"a": [1, {"b": None}]},
         "venue": None, "stop_price": None, "trail_amount": None, "expire_at": None},
        {**VALID, "type": "market", "limit_price": None, "quantity": 5, "client_order_id": None},
        {**VALID, "expire_at": "2026-12-05T10:00:00Z", "quantity": "0.0000000010"},
    ):  # fmt: skip
        fast = SHAPE.plain_validation(body)
        assert fast is not None, body
        assert ("ok", fast) == drf(body)
        assert exact(fast) == exact(drf(body)[1])
    assert SHAPE.plain_validation(VALID)["time_in_force"] == "gtc"
    assert SHAPE.plain_validation(VALID)["metadata"] == {}
    assert SHAPE.plain_validation(VALID)["quantity"] == Decimal("1000.0000000000")


def test_what_is_not_plain_goes_to_drf():
    for body in (
        [VALID],
        {k: v for k, v in VALID.items() if k != "symbol"},
        {**VALID, "symbol": " EUR_USD"},  # DRF strips: its answer, not ours
        {**VALID, "symbol": "ÉUR"},
        {**VALID, "symbol": ""},
        {**VALID, "symbol": 7},
        {**VALID, "side": "BUY"},
        {**VALID, "side": None},
        {**VALID, "quantity": 1.5},
        {**VALID, "quantity": True},
        {**VALID, "quantity": "NaN"},
        {**VALID, "quantity": "1" * 19},
        {**VALID, "client_order_id": "has space"},
        {**VALID, "client_order_id": "x" * 65},
        {**VALID, "metadata": []},
        {**VALID, "metadata": {1: 2}},
        {**VALID, "take_profit": {"price": "1"}},
        {**VALID, "expire_at": "tomorrow"},
    ):
        assert SHAPE.plain_validation(body) is None, body
    # and DRF still writes the errors
    assert drf({**VALID, "take_profit": {"price": "1"}}) == (
        "error",
        {"take_profit": ["not supported by this server yet"]},
    )


def test_run_validation_takes_the_direct_path_and_drfs_for_errors():
    assert SHAPE.run_validation(VALID) == drf(VALID)[1]
    try:
        SHAPE.run_validation({**VALID, "side": "up"})
    except serializers.ValidationError as error:
        assert error.detail == drf({**VALID, "side": "up"})[1]
    else:
        raise AssertionError("accepted")


TEXT = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="AZaz09._:- ", max_size=70),
    st.sampled_from(["EUR_USD", "buy", "sell", "limit", "market", "ioc", "gtc", "day", " x", "x "]),
)
NUMBERS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["1", "0.1", "1e3", "-5", " 2 ", "1E-11", "123456789012345678", ""]),
)
ANY = st.one_of(st.none(), st.booleans(), TEXT, NUMBERS, st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))  # fmt: skip
FIELDS = {
    "account": TEXT,
    "client_order_id": TEXT,
    "symbol": TEXT,
    "side": TEXT,
    "type": TEXT,
    "quantity": NUMBERS,
    "limit_price": NUMBERS,
    "stop_price": NUMBERS,
    "time_in_force": TEXT,
    "expire_at": st.one_of(st.datetimes().map(lambda d: d.isoformat()), TEXT),
    "venue": TEXT,
    "strategy_id": TEXT,
    "signal_id": TEXT,
    "metadata": st.dictionaries(st.text(max_size=5), st.integers() | st.text(), max_size=3),
    "trail_amount": ANY,
    "unknown": ANY,
}


@st.composite
def bodies(draw):
    body = dict(VALID)
    for name in draw(st.sets(st.sampled_from(sorted(FIELDS)), max_size=4)):
        choice = draw(st.sampled_from(["drop", "none", "value", "value", "any"]))
        if choice == "drop":
            body.pop(name, None)
        elif choice == "none":
            body[name] = None
        elif choice == "any":
            body[name] = draw(ANY)
        else:
            body[name] = draw(FIELDS[name])
    return body


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_generated_bodies_the_direct_path_agrees_with_drf_or_stands_aside(body):
    fast = SHAPE.plain_validation(body)
    outcome, answer = drf(body)
    if fast is not None:
        assert outcome == "ok"
        assert exact(fast) == exact(answer)
    # run_validation answers as DRF whichever path took the body
    try:
        assert ("ok", SHAPE.run_validation(body)) == (outcome, answer)
    except serializers.ValidationError as error:
        assert ("error", error.detail) == (outcome, answer)
