"""`manage.py setup_periodic_tasks`: write the beat schedule declared in orders.schedules into
django-celery-beat. Idempotent; run after migrate on every deploy (and by `make run`)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from orders.schedules import periodic_tasks_sync


class Command(BaseCommand):
    help = "Create or update the beat schedule declared in orders/schedules.py."

    def handle(self, *args: Any, **options: Any) -> None:
        result = periodic_tasks_sync()
        for label, names in (
            ("created", result.created),
            ("updated", result.updated),
            ("disabled", result.disabled),
        ):
            for name in names:
                self.stdout.write(f"{label}: {name}")
        self.stdout.write(
            f"periodic tasks: {len(result.created)} created, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged, {len(result.disabled)} disabled"
        )
