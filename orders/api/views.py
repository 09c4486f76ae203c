"""One view per operation: validate the shape, resolve what the user may touch, call one
service, serialize. No business rule lives here."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tradingsite.api_errors import shed, validation_error_body

from .. import actors, selectors, services
from ..exceptions import ApplicationError, NotFound
from ..models import Account, Fill, Order, OrderEvent
from ..states import OPEN
from ..validation import OrderTerms
from .filters import FillFilter, OrderFilter
from .pagination import NewestFillFirst, NewestFirst, OldestFirstBySeq
from .serializers import (
    BatchInputSerializer,
    CancelAllInputSerializer,
    EventOutputSerializer,
    FillOutputSerializer,
    OrderDetailOutputSerializer,
    OrderInputSerializer,
    OrderModifyInputSerializer,
    OrderOutputSerializer,
)

ERROR = OpenApiResponse(description='{"error": {"code", "message", "fields"?, "order_id"}}')


def _correlation_id(request: Request) -> str:
    return getattr(request._request, "correlation_id", "")


def _account_for(user: Any, code: str | None) -> Account:
    """The account an order is for: the one named, or the user's only account."""
    if code:
        account = selectors.account_tradable(user, code)
        if account is None:
            raise NotFound(f"account {code} not found", code="not_found")
        return account
    granted = list(selectors.accounts_tradable(user))[:2]  # their codes
    if len(granted) == 1:
        return selectors.account_tradable(user, granted[0])  # type: ignore[return-value]
    if not granted:
        raise ApplicationError("you have no account to trade", code="no_account", http_status=403)
    raise ApplicationError(
        "you trade several accounts: name one",
        code="account_required",
        fields={"account": ["required when you have several accounts"]},
    )


def _terms(data: dict[str, Any]) -> OrderTerms:
    return OrderTerms(
        symbol=data["symbol"],
        side=data["side"],
        type=data["type"],
        time_in_force=data["time_in_force"],
        quantity=data["quantity"],
        limit_price=data.get("limit_price"),
        stop_price=data.get("stop_price"),
        expire_at=data.get("expire_at"),
        client_order_id=data.get("client_order_id"),
        venue=data.get("venue"),
        strategy_id=data.get("strategy_id", ""),
        signal_id=data.get("signal_id", ""),
        metadata=data.get("metadata") or {},
    )


_shapes = threading.local()


def _order_shape() -> OrderInputSerializer:
    """One input serializer per thread, reused: building its fields costs more than checking
    a body. `run_validation` keeps no state between calls."""
    shape = getattr(_shapes, "order", None)
    if shape is None:
        shape = _shapes.order = OrderInputSerializer()
    return shape


def _submit_one(request: Request, payload: Any) -> tuple[int, dict[str, Any]]:
    """Validate and submit one order body; answers (HTTP status, body). Raises nothing a client
    caused: bad input comes back as its error body."""
    try:
        data = _order_shape().run_validation(payload)
    except serializers.ValidationError as error:
        return 400, validation_error_body(error.detail)
    try:
        result = services.order_submit(
            account=_account_for(request.user, data.get("account")),
            terms=_terms(data),
            user=request.user,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
    except ApplicationError as error:
        return error.http_status, {"error": error.as_dict()}
    body = OrderOutputSerializer(result.order).data
    return (201 if result.created else 200), body


def _order_for_reading(user: Any, order_id: UUID) -> Order:
    order = selectors.order_visible_to(user, order_id)
    if order is None:
        raise Http404("No Order matches the given query.")
    return order


def _order_for_trading(user: Any, order_id: Any) -> Order:
    return get_object_or_404(selectors.orders_tradable_by(user), pk=order_id)


class OrderListCreateView(generics.ListAPIView):
    serializer_class = OrderOutputSerializer
    pagination_class = NewestFirst
    filterset_class = OrderFilter

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Order.objects.none()
        return selectors.orders_visible_to(self.request.user)

    @extend_schema(
        request=OrderInputSerializer,
        responses={
            201: OrderOutputSerializer,
            200: OrderOutputSerializer,
            400: ERROR,
            404: ERROR,
            409: ERROR,
            422: ERROR,
        },
        summary="Submit an order (idempotent by client_order_id)",
    )
    def post(self, request: Request) -> Response:
        code, body = _submit_one(request, request.data)
        response = Response(body, status=code)
        error = body.get("error", {}) if code in (429, 503) else {}
        if error.get("retry_after") is not None:
            response["Retry-After"] = str(error["retry_after"])
        return shed(response) if error.get("code") == "service_busy" else response


class OrderBatchView(APIView):
    @extend_schema(
        request=BatchInputSerializer,
        responses={200: inline_serializer("BatchResult", {"results": serializers.ListField()})},
        summary="Submit up to 1000 orders; one result per order, in order",
    )
    def post(self, request: Request) -> Response:
        # Shed load before any work: a busy intake refuses the whole request (503, nothing
        # stored) instead of checking hundreds of bodies only to refuse each of them.
        services.intake_check()
        batch = BatchInputSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        payloads = batch.validated_data["orders"]
        # One input serializer for every body (its fields are built once), and one service
        # call for the orders that pass it: what every order reads is read once, and the
        # accepted orders are stored together.
        shape = _order_shape()
        results: list[dict[str, Any] | None] = [None] * len(payloads)
        requests: list[services.SubmitRequest] = []
        positions: list[int] = []
        accounts: dict[str | None, Account] = {}
        for index, payload in enumerate(payloads):
            try:
                data = shape.run_validation(payload)
                code = data.get("account")
                if code not in accounts:
                    accounts[code] = _account_for(request.user, code)
                requests.append(services.SubmitRequest(accounts[code], _terms(data)))
                positions.append(index)
            except serializers.ValidationError as error:
                results[index] = {"status": 400, **validation_error_body(error.detail)}
            except ApplicationError as error:
                results[index] = {"status": error.http_status, "error": error.as_dict()}
        answers = services.orders_submit_many(
            requests=requests,
            user=request.user,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
            admitted=True,  # by the intake check above
        )
        accepted = [answer.order for answer in answers if isinstance(answer, services.SubmitResult)]
        bodies = iter(OrderOutputSerializer(accepted, many=True).data)
        for index, answer in zip(positions, answers, strict=True):
            if isinstance(answer, ApplicationError):
                results[index] = {"status": answer.http_status, "error": answer.as_dict()}
            else:
                results[index] = {"status": 201 if answer.created else 200, "order": next(bodies)}
        return Response({"results": results}, status=status.HTTP_200_OK)


class OrderDetailView(APIView):
    @extend_schema(responses={200: OrderDetailOutputSerializer, 404: ERROR})
    def get(self, request: Request, order_id: str) -> Response:
        order = _order_for_reading(request.user, order_id)
        return Response(OrderDetailOutputSerializer(order).data)

    @extend_schema(
        request=OrderModifyInputSerializer,
        responses={
            200: OrderOutputSerializer,
            202: OrderOutputSerializer,
            400: ERROR,
            404: ERROR,
            409: ERROR,
        },
        summary="Modify a working order (200: applied; 202: sent to the venue)",
    )
    def patch(self, request: Request, order_id: str) -> Response:
        order = _order_for_trading(request.user, order_id)
        serializer = OrderModifyInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order, applied = services.order_modify(
            order_id=order.pk,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
            **serializer.validated_data,
        )
        return Response(
            OrderOutputSerializer(order).data,
            status=status.HTTP_200_OK if applied else status.HTTP_202_ACCEPTED,
        )


class OrderByClientIdView(APIView):
    @extend_schema(responses={200: OrderDetailOutputSerializer, 400: ERROR, 404: ERROR})
    def get(self, request: Request, client_order_id: str) -> Response:
        orders = selectors.orders_visible_to(request.user).filter(client_order_id=client_order_id)
        account = request.query_params.get("account")
        if account:
            orders = orders.filter(account__code=account)
        found = list(orders[:2])
        if not found:
            raise NotFound(f"no order with client_order_id {client_order_id}")
        if len(found) > 1:
            raise ApplicationError(
                "several accounts use this client_order_id: pass ?account=",
                code="account_required",
                fields={"account": ["required: the id is not unique"]},
            )
        return Response(OrderDetailOutputSerializer(found[0]).data)


class OrderCancelView(APIView):
    @extend_schema(request=None, responses={202: OrderOutputSerializer, 404: ERROR, 409: ERROR})
    def post(self, request: Request, order_id: str) -> Response:
        order = _order_for_trading(request.user, order_id)
        order = services.order_cancel(
            order_id=order.pk,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
        return Response(OrderOutputSerializer(order).data, status=status.HTTP_202_ACCEPTED)


class OrderCancelAllView(APIView):
    @extend_schema(
        request=CancelAllInputSerializer,
        responses={
            202: inline_serializer(
                "CancelAllResult",
                {"count": serializers.IntegerField(), "orders": OrderOutputSerializer(many=True)},
            )
        },
        summary="Cancel every open order you trade, optionally by account, symbol, strategy",
    )
    def post(self, request: Request) -> Response:
        filters = CancelAllInputSerializer(data={**request.query_params.dict(), **request.data})
        filters.is_valid(raise_exception=True)
        orders = selectors.orders_tradable_by(request.user).filter(status__in=OPEN)
        given = filters.validated_data
        if "account" in given:
            orders = orders.filter(account__code=given["account"])
        if "symbol" in given:
            orders = orders.filter(instrument__symbol=given["symbol"])
        if "strategy_id" in given:
            orders = orders.filter(strategy_id=given["strategy_id"])
        cancelled = services.order_cancel_many(
            orders=orders.order_by("created_at"),
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
            reason="cancel-all",
        )
        return Response(
            {"count": len(cancelled), "orders": OrderOutputSerializer(cancelled, many=True).data},
            status=status.HTTP_202_ACCEPTED,
        )


class OrderEventsView(generics.ListAPIView):
    serializer_class = EventOutputSerializer
    pagination_class = OldestFirstBySeq
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[OrderEvent]:
        if getattr(self, "swagger_fake_view", False):
            return OrderEvent.objects.none()
        order = _order_for_reading(self.request.user, self.kwargs["order_id"])
        return selectors.order_events(order)


class FillListView(generics.ListAPIView):
    serializer_class = FillOutputSerializer
    pagination_class = NewestFillFirst
    filterset_class = FillFilter

    def get_queryset(self) -> QuerySet[Fill]:
        if getattr(self, "swagger_fake_view", False):
            return Fill.objects.none()
        return selectors.fills_visible_to(self.request.user)
