"""Every request carries a correlation id (X-Request-ID, or a new one) into the events it
causes and back out in the response, and reads the reference-data version at most once."""

import re
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import refdata
from .ids import uuid7

_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class CorrelationIdMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        # A new id is time-ordered (version 7): the audit trail's index of correlation ids
        # (order_event_correlation) then grows at its end, as the ids of orders do, instead of
        # at a random leaf per request (a full page in the WAL after every checkpoint).
        request.correlation_id = given if _VALID.match(given) else uuid7().hex  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request.correlation_id  # type: ignore[attr-defined]
        return response


class RefDataScopeMiddleware:
    """One reference-data version per request (tradingsite/refdata.py)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with refdata.scope():
            return self.get_response(request)
