"""/healthz and /readyz: readiness answers 200 when the database, Redis and a Celery worker
answer, 503 naming what failed otherwise, logged once at WARNING and not as a server error."""

import pytest
from rest_framework.test import APIClient

from tradingsite.celery import app

pytestmark = pytest.mark.django_db


def test_ready_when_the_database_redis_and_a_worker_answer(monkeypatch):
    monkeypatch.setattr(app.control, "ping", lambda timeout: [{"celery@w1": {"ok": "pong"}}])
    response = APIClient().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "workers": "ok (1)"},
    }


def test_not_ready_names_what_failed_once_at_warning(monkeypatch, caplog):
    caplog.set_level("INFO")
    monkeypatch.setattr(app.control, "ping", lambda timeout: [])
    response = APIClient().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"] == "ok"
    assert body["checks"]["workers"] == "error: no Celery worker answered within 1 s"
    logged = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert logged == [
        (
            "tradingsite.health",
            "WARNING",
            "not ready: workers error: no Celery worker answered within 1 s",
        )
    ]  # and nothing from django.request
