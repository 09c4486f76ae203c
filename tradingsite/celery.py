import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingsite.settings")

app = Celery("tradingsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _connections_fit_for_the_task(task: Any = None, **kwargs: Any) -> None:
    """Before each task, what Django does before each request: close connections that are
    older than CONN_MAX_AGE or broken, and health-check the others at their next use. (Celery's
    own fixup would close them all: settings.CELERY_DB_REUSE_MAX.) Eager tasks run inside
    their caller's transaction: left alone."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
