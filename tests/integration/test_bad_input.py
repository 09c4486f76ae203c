"""No body a client can send gets a 500: every answer is a 2xx or a 4xx in the error shape."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

KEYS = [
    "account",
    "client_order_id",
    "symbol",
    "side",
    "type",
    "quantity",
    "limit_price",
    "stop_price",
    "time_in_force",
    "expire_at",
    "venue",
    "strategy_id",
    "signal_id",
    "metadata",
    "take_profit",
    "algorithm",
]
GOOD = {
    "symbol": ["EUR_USD", "BTC_USD", "AAPL"],
    "side": ["buy", "sell"],
    "type": ["market", "limit", "stop", "stop_limit"],
    "time_in_force": ["gtc", "day", "gtd", "ioc", "fok"],
    "quantity": ["1", "100000", "0.0001", "-5", "1e3"],
    "limit_price": ["1.08500", "190.00", "0", "1.0850001"],
    "account": ["ACC-1", "ACC-2", ""],
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def order_bodies(draw):
    body = {}
    for key in draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=len(KEYS))):
        if key in GOOD and draw(st.booleans()):
            body[key] = draw(st.sampled_from(GOOD[key]))
        else:
            body[key] = draw(json_values)
    return body


def assert_error_shape(response):
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=order_bodies())
def test_submit_never_500s(api, body):
    assert_error_shape(api.post("/api/v1/orders/", body, format="json"))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(orders=st.lists(order_bodies() | json_values, max_size=4))
def test_batch_never_500s(api, orders):
    response = api.post("/api/v1/orders/batch/", {"orders": orders}, format="json")
    assert_error_shape(response)
    if response.status_code == 200:
        assert len(response.json()["results"]) == len(orders)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.dictionaries(
        st.sampled_from(["quantity", "limit_price", "stop_price", "expire_at"]),
        json_values,
        max_size=4,
    )
)
def test_modify_never_500s(api, body):
    order_id = api.post(
        "/api/v1/orders/",
        {
            "account": "ACC-1",
            "client_order_id": "m-1",
            "symbol": "EUR_USD",
            "side": "buy",
            "type": "limit",
            "quantity": "1000",
            "limit_price": "1.08000",
        },
        format="json",
    ).json()["id"]
    assert_error_shape(api.patch(f"/api/v1/orders/{order_id}/", body, format="json"))


@pytest.mark.parametrize(
    "query",
    [
        "?cursor=garbage",
        "?page_size=-1",
        "?created_after=yesterday",
        "?parent_id=not-a-uuid",
        "?open=maybe",
        "?status=nope",
    ],
)
def test_list_query_never_500s(api, query):
    assert_error_shape(api.get("/api/v1/orders/" + query))
