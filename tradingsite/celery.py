import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_init

from .direct_publish import DirectPublisher

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


@worker_init.connect
def _worker_priority(**kwargs: Any) -> None:
    """The worker runs at a niceness of at least settings.WORKER_NICE (its prefork children are
    forked after this and inherit it): on a machine shared with the web, the intake comes
    first. A worker started nicer already stays as it is."""
    from django.conf import settings

    wanted = settings.WORKER_NICE
    if wanted > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, wanted)


# Task messages pushed straight onto the broker's list (tradingsite/direct_publish.py): the
# outbox's publishes, a lone order's on its request path.
direct = DirectPublisher(app)
