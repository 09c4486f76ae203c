"""Positions and accounts (API.md "Fills, positions, accounts")."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors
from ..models import Position
from ..valuation import PositionValue, account_value, positions_valued
from .serializers import format_price, format_quantity


def _amount(value: Any) -> str | None:
    return format_quantity(value) if value is not None else None


def position_body(value: PositionValue) -> dict[str, Any]:
    position = value.position
    places = position.instrument.price_places
    return {
        "account": position.account.code,
        "symbol": position.instrument.symbol,
        "strategy_id": position.strategy_id,
        "quantity": format_quantity(position.quantity),
        "average_price": format_price(position.average_price, places)
        if position.quantity
        else None,
        "currency": position.instrument.quote_currency,
        "realized_pnl": _amount(position.realized_pnl),
        "unrealized_pnl": _amount(value.unrealized_pnl),
        "market_price": format_price(value.market_price, places) if value.market_price else None,
        "market_value": _amount(value.market_value),
        "commission": _amount(position.commission),
        "commission_currency": position.commission_currency,
        "opened_at": position.opened_at,
        "updated_at": position.updated_at,
    }


class PositionPages(CursorPagination):
    ordering = ("id",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


POSITION = inline_serializer(
    "Position",
    {
        name: serializers.CharField(allow_null=True)
        for name in (
            "account",
            "symbol",
            "strategy_id",
            "quantity",
            "average_price",
            "currency",
            "realized_pnl",
            "unrealized_pnl",
            "market_price",
            "market_value",
            "commission",
            "commission_currency",
            "opened_at",
            "updated_at",
        )
    },
)


class PositionListView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("account"),
            OpenApiParameter("symbol"),
            OpenApiParameter(
                "strategy_id",
                description="a strategy's positions; absent: the account-level positions",
            ),
            OpenApiParameter("open", bool, description="only non-flat positions"),
        ],
        responses={
            200: inline_serializer(
                "PositionPage",
                {
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": POSITION,
                },
            )
        },
    )
    def get(self, request: Request) -> Response:
        accounts = selectors.accounts_readable_by(request.user)
        rows = Position.objects.filter(account__in=accounts).select_related("account", "instrument")
        params = request.query_params
        rows = rows.filter(strategy_id=params.get("strategy_id", ""))
        if params.get("account"):
            rows = rows.filter(account__code=params["account"])
        if params.get("symbol"):
            rows = rows.filter(instrument__symbol=params["symbol"])
        if params.get("open") in ("true", "1"):
            rows = rows.exclude(quantity=0)
        paginator = PositionPages()
        page = paginator.paginate_queryset(rows, request, view=self)
        return paginator.get_paginated_response([position_body(v) for v in positions_valued(page)])


def account_body(account: Any) -> dict[str, Any]:
    value = account_value(account)
    return {
        "code": account.code,
        "name": account.name,
        "currency": account.currency,
        "cash": format_quantity(value.cash),
        "equity": format_quantity(value.equity),
        "buying_power": format_quantity(value.buying_power),
        "margin_used": format_quantity(value.margin_used),
        "realized_pnl_today": format_quantity(value.realized_pnl_today),
        "unrealized_pnl": format_quantity(value.unrealized_pnl),
        "daily_pnl": format_quantity(value.daily_pnl),
        "gross_exposure": format_quantity(value.gross_exposure),
        "net_exposure": format_quantity(value.net_exposure),
        "open_orders": value.open_orders,
        "fully_marked": value.complete,
    }


ACCOUNT = inline_serializer(
    "Account",
    {
        **{
            name: serializers.CharField()
            for name in (
                "code",
                "name",
                "currency",
                "cash",
                "equity",
                "buying_power",
                "margin_used",
                "realized_pnl_today",
                "unrealized_pnl",
                "daily_pnl",
                "gross_exposure",
                "net_exposure",
            )
        },
        "open_orders": serializers.IntegerField(),
        "fully_marked": serializers.BooleanField(),
    },
)


class AccountListView(APIView):
    @extend_schema(
        operation_id="accounts_list",
        responses={200: inline_serializer("AccountList", {"results": ACCOUNT})},
    )
    def get(self, request: Request) -> Response:
        accounts = selectors.accounts_readable_by(request.user).order_by("code")[:500]
        return Response(
            {"next": None, "previous": None, "results": [account_body(a) for a in accounts]}
        )


class AccountDetailView(APIView):
    @extend_schema(responses={200: ACCOUNT})
    def get(self, request: Request, code: str) -> Response:
        account = get_object_or_404(selectors.accounts_readable_by(request.user), code=code)
        return Response(account_body(account))
