"""Liveness and readiness. /healthz: the process answers. /readyz: the database, Redis and at
least one Celery worker answer; 503 with the failing parts otherwise, logged once at WARNING
with what failed (not by django.request as a server error: a probe that finds the workers still
starting is a state to report, and each probe every few seconds would be an ERROR line)."""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

logger = logging.getLogger(__name__)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _workers() -> str:
    from tradingsite.celery import app

    replies = app.control.ping(timeout=1.0)
    if not replies:
        raise RuntimeError("no Celery worker answered within 1 s")
    return f"ok ({len(replies)})"


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    ready = True
    for name, probe in (("database", _database), ("redis", _redis), ("workers", _workers)):
        try:
            checks[name] = probe()
        except Exception as error:  # any failure means not ready; say which and why
            checks[name] = f"error: {error}"
            ready = False
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
    if not ready:
        response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log
        failing = "; ".join(
            f"{name} {check}" for name, check in checks.items() if check.startswith("error")
        )
        logger.warning("not ready: %s", failing)
    return response
