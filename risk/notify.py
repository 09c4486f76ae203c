"""Who hears about emergencies. Pluggable: settings.RISK_NOTIFIERS lists dotted paths of
classes with `send(subject, body, data)`. A notifier that fails is logged and never stops the
action it reports."""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class LogNotifier:
    def send(self, subject: str, body: str, data: dict[str, Any]) -> None:
        logger.warning("risk notification: %s", subject, extra={"risk": data})


class EmailNotifier:
    """Django's mail to settings.RISK_NOTIFY_EMAILS (nothing when the list is empty)."""

    def send(self, subject: str, body: str, data: dict[str, Any]) -> None:
        recipients = list(settings.RISK_NOTIFY_EMAILS)
        if recipients:
            send_mail(f"[Fillmore risk] {subject}", body, None, recipients, fail_silently=False)


class WebhookNotifier:
    """POST {"subject", "body", "data"} as JSON to settings.RISK_NOTIFY_WEBHOOK_URL."""

    def send(self, subject: str, body: str, data: dict[str, Any]) -> None:
        url = settings.RISK_NOTIFY_WEBHOOK_URL
        if not url:
            return
        payload = json.dumps({"subject": subject, "body": body, "data": data}, default=str)
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's setting
            url,
            data=payload.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=3):  # noqa: S310
            pass


def notify(subject: str, body: str, data: dict[str, Any] | None = None) -> list[str]:
    """Send through every configured notifier; answers the names of those that failed."""
    failed = []
    for path in settings.RISK_NOTIFIERS:
        try:
            import_string(path)().send(subject, body, data or {})
        except Exception:  # one broken channel must not silence the others
            logger.exception("risk notifier failed", extra={"notifier": path})
            failed.append(path)
    return failed
