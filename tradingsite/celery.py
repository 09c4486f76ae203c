import os
from typing import Any

from celery import Celery
from celery.signals import (
    beat_init,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_ready,
)

from .direct_publish import DirectPublisher
from .gcfreeze import freeze_startup_objects

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


@worker_ready.connect
def _freeze_worker(**kwargs: Any) -> None:
    """The worker's parent (it receives every task message and hands it to a child) is ready:
    its start-up objects out of the garbage collector's sight (tradingsite/gcfreeze.py)."""
    freeze_startup_objects("worker")


@worker_process_init.connect
def _freeze_worker_child(**kwargs: Any) -> None:
    """A prefork child, forked and initialised, before its first task: the same."""
    freeze_startup_objects("worker child")


@beat_init.connect
def _freeze_beat(**kwargs: Any) -> None:
    freeze_startup_objects("beat")


# Task messages pushed straight onto the broker's list (tradingsite/direct_publish.py): the
# outbox's publishes, a lone order's on its request path.
direct = DirectPublisher(app)
