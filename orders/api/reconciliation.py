"""GET /api/v1/reconciliation/: reconciliation runs, newest first, each with its breaks.

Compliance, risk and superusers read every break; a trader reads every run but only the breaks
of the accounts granted to them; a user with neither is refused (403)."""

from __future__ import annotations

from typing import Any

import django_filters as filters
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from .. import selectors
from ..models_reconciliation import ReconciliationBreak, ReconciliationRun
from .pagination import NewestFirst


class NewestRunFirst(NewestFirst):
    ordering = ("-started_at", "-id")


class ReconciliationRunFilter(filters.FilterSet):
    venue = filters.CharFilter()
    status = filters.MultipleChoiceFilter(choices=ReconciliationRun.Status.choices)

    class Meta:
        model = ReconciliationRun
        fields: list[str] = []


def _breaks_visible_to(user: Any) -> QuerySet[ReconciliationBreak]:
    """Every break for the roles that read every account; a trader's accounts' breaks for a
    trader. Raises PermissionDenied for a user who is neither."""
    breaks = ReconciliationBreak.objects.order_by("id")
    if selectors.user_reads_all_accounts(user):
        return breaks
    codes = list(selectors.accounts_readable_by(user).values_list("code", flat=True))
    if not codes:
        raise PermissionDenied("reconciliation needs the compliance or risk role, or an account")
    return breaks.filter(account__in=codes)


class ReconciliationBreakOutputSerializer(serializers.ModelSerializer):
    order_id = serializers.UUIDField(allow_null=True, read_only=True)

    class Meta:
        model = ReconciliationBreak
        fields = [
            "id",
            "kind",
            "severity",
            "account",
            "symbol",
            "order_id",
            "expected",
            "actual",
            "healed",
            "detail",
            "created_at",
        ]


class ReconciliationRunOutputSerializer(serializers.ModelSerializer):
    # Only the breaks the reader may see (prefetched by the view).
    breaks = ReconciliationBreakOutputSerializer(many=True, read_only=True, source="visible_breaks")

    class Meta:
        model = ReconciliationRun
        fields = [
            "id",
            "venue",
            "status",
            "trigger",
            "started_at",
            "finished_at",
            "summary",
            "breaks",
        ]


class ReconciliationRunListView(generics.ListAPIView):
    serializer_class = ReconciliationRunOutputSerializer
    pagination_class = NewestRunFirst
    filterset_class = ReconciliationRunFilter

    def get_queryset(self) -> QuerySet[ReconciliationRun]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return ReconciliationRun.objects.none()
        breaks = _breaks_visible_to(self.request.user)
        return ReconciliationRun.objects.prefetch_related(
            Prefetch("breaks", queryset=breaks, to_attr="visible_breaks")
        )

    @extend_schema(summary="Reconciliation runs with the venues, newest first, with their breaks")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
