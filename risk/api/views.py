"""The risk API (API.md "Risk"): limits, trading state, halt and resume, risk events."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import actors

from .. import selectors, services
from ..exceptions import RiskPermissionDenied
from ..models import BreakerTrip, RiskEvent, RiskLimit, TradingMode, TradingState
from .serializers import (
    HaltInputSerializer,
    LimitSerializer,
    ResumeInputSerializer,
    RiskEventSerializer,
    TradingStateSerializer,
)

RISK_GROUP = "risk"


def _require_risk_role(user: Any) -> None:
    if not (user.is_superuser or user.groups.filter(name=RISK_GROUP).exists()):
        raise RiskPermissionDenied("this needs the risk role")


def _correlation_id(request: Request) -> str:
    return getattr(request._request, "correlation_id", "")


class LimitPages(CursorPagination):
    ordering = ("id",)
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class NewestEventFirst(LimitPages):
    ordering = ("-at", "-id")


class LimitListCreateView(generics.ListAPIView):
    serializer_class = LimitSerializer
    pagination_class = LimitPages
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return RiskLimit.objects.none()
        return selectors.limits_visible_to(self.request.user)

    @extend_schema(request=LimitSerializer, responses={201: LimitSerializer})
    def post(self, request: Request) -> Response:
        _require_risk_role(request.user)
        serializer = LimitSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        limit = services.risk_limit_save(
            limit=None,
            changes=serializer.validated_data,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
        return Response(LimitSerializer(limit).data, status=status.HTTP_201_CREATED)


class LimitDetailView(APIView):
    serializer_class = LimitSerializer

    def _limit(self, request: Request, limit_id: int) -> RiskLimit:
        return get_object_or_404(selectors.limits_visible_to(request.user), pk=limit_id)

    def get(self, request: Request, limit_id: int) -> Response:
        return Response(LimitSerializer(self._limit(request, limit_id)).data)

    def patch(self, request: Request, limit_id: int) -> Response:
        limit = self._limit(request, limit_id)
        _require_risk_role(request.user)
        serializer = LimitSerializer(limit, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        limit = services.risk_limit_save(
            limit=limit,
            changes=serializer.validated_data,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
        return Response(LimitSerializer(limit).data)

    def delete(self, request: Request, limit_id: int) -> Response:
        limit = self._limit(request, limit_id)
        _require_risk_role(request.user)
        services.risk_limit_delete(
            limit=limit,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class TradingStateView(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "TradingStates",
                {
                    "states": TradingStateSerializer(many=True),
                    "halted": serializers.BooleanField(),
                    "circuit_breakers": serializers.ListField(),
                },
            )
        }
    )
    def get(self, request: Request) -> Response:
        states = TradingState.objects.all()
        trips = BreakerTrip.objects.filter(resolved_at__isnull=True).select_related("breaker")
        return Response(
            {
                "states": TradingStateSerializer(states, many=True).data,
                "halted": states.filter(mode=TradingMode.HALTED).exists(),
                "circuit_breakers": [
                    {
                        "name": trip.breaker.name,
                        "kind": trip.breaker.kind,
                        "scope": trip.breaker.scope,
                        "target": trip.breaker.target,
                        "threshold": format(trip.breaker.threshold.normalize(), "f"),
                        "observed": format(trip.observed.normalize(), "f"),
                        "actions": trip.breaker.actions,
                        "tripped_at": trip.tripped_at,
                    }
                    for trip in trips
                ],
            }
        )


class HaltView(APIView):
    @extend_schema(
        request=HaltInputSerializer,
        responses={
            200: inline_serializer(
                "HaltResult",
                {
                    "state": TradingStateSerializer(),
                    "cancelled": serializers.IntegerField(),
                    "flatten_order_ids": serializers.ListField(child=serializers.UUIDField()),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        _require_risk_role(request.user)
        given = HaltInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        result = services.trading_halt(
            **given.validated_data,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
        return Response(
            {
                "state": TradingStateSerializer(result.state).data,
                "cancelled": result.cancelled,
                "flatten_order_ids": result.flatten_order_ids,
            }
        )


class ResumeView(APIView):
    @extend_schema(request=ResumeInputSerializer, responses={200: TradingStateSerializer})
    def post(self, request: Request) -> Response:
        _require_risk_role(request.user)
        given = ResumeInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        state = services.trading_resume(
            **given.validated_data,
            actor=actors.user_actor(request.user),
            correlation_id=_correlation_id(request),
        )
        return Response(TradingStateSerializer(state).data)


class RiskEventListView(generics.ListAPIView):
    serializer_class = RiskEventSerializer
    pagination_class = NewestEventFirst
    filter_backends: list = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return RiskEvent.objects.none()
        events = selectors.risk_events_visible_to(self.request.user)
        kind = self.request.query_params.get("kind")
        return events.filter(kind=kind) if kind else events
