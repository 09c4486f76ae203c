"""The beat schedule, declared in code and written into django-celery-beat by
`manage.py setup_periodic_tasks` (run by `make run` and on every deploy, after migrate).

Code is the source of truth for the entries it declares: a sync brings each one's task,
interval, queue and expiry back to what is written here and enables it. Entries named with our
PREFIX that are no longer declared are disabled (not deleted, so their run history stays for
the audit). Other PeriodicTasks (one-off jobs an operator added in the admin) are left alone.

A handful of static entries only (RELIABILITY.md, pitfall 5): beat reloads the whole schedule
on every change, so nothing here is per order or per slice. A sync that finds everything as
declared writes nothing, so it does not make beat reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

PREFIX = "fillmore:"
QUEUE = "housekeeping"


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    task: str
    every: timedelta
    # A run not started within this many seconds is dropped: the next one is already due.
    expire_seconds: int
    description: str = ""
    queue: str = QUEUE


SCHEDULE: tuple[ScheduleEntry, ...] = (
    ScheduleEntry(
        name=f"{PREFIX} poll venues",
        task="orders.poll_venues",
        every=timedelta(seconds=1),
        expire_seconds=2,
        description="Pull execution reports (fills of resting orders, expiries) from each venue.",
    ),
    ScheduleEntry(
        name=f"{PREFIX} relay outbox",
        task="orders.relay_outbox",
        every=timedelta(seconds=1),
        expire_seconds=2,
        description="Publish outbox rows whose after-commit publish did not happen.",
    ),
    ScheduleEntry(
        name=f"{PREFIX} sweep stuck orders",
        task="orders.sweep_stuck",
        every=timedelta(seconds=5),
        expire_seconds=10,
        description="Re-dispatch orders left in validated, pending_submit or pending_cancel.",
    ),
    ScheduleEntry(
        name=f"{PREFIX} expire orders",
        task="orders.expire",
        every=timedelta(seconds=5),
        expire_seconds=10,
        description="Expire GTD and DAY orders past their expire_at.",
    ),
    ScheduleEntry(
        name=f"{PREFIX} reconcile venues",
        task="orders.reconcile",
        every=timedelta(seconds=60),
        expire_seconds=50,
        description="Compare orders, fills and positions with each venue; heal or flag.",
    ),
    ScheduleEntry(
        name=f"{PREFIX} evaluate circuit breakers",
        task="risk.evaluate_breakers",
        every=timedelta(seconds=5),
        expire_seconds=10,
        description="Trip circuit breakers whose condition holds (fills also trigger a run).",
    ),
    ScheduleEntry(
        name=f"{PREFIX} snapshot accounts",
        task="orders.snapshot_accounts",
        every=timedelta(seconds=60),
        expire_seconds=50,
        description="Take each account's daily snapshot once the cut-off has passed.",
    ),
    ScheduleEntry(
        name=f"{PREFIX} prune outbox",
        task="orders.prune_outbox",
        every=timedelta(hours=1),
        expire_seconds=1800,
        description="Delete outbox rows published more than a day ago.",
    ),
)


@dataclass(frozen=True)
class SyncResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    disabled: list[str]


_PERIODS = (
    (86400, IntervalSchedule.DAYS),
    (3600, IntervalSchedule.HOURS),
    (60, IntervalSchedule.MINUTES),
    (1, IntervalSchedule.SECONDS),
)


def interval_for(every: timedelta) -> tuple[int, str]:
    """(every, period) in the largest whole unit: 1 hour is (1, hours), 90 s is (90, seconds)."""
    seconds = every.total_seconds()
    if seconds < 1 or seconds != int(seconds):
        raise ValueError(f"a schedule interval must be whole seconds, not {every}")
    for unit, period in _PERIODS:
        if int(seconds) % unit == 0:
            return int(seconds) // unit, period
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


def _interval_schedule(every: timedelta) -> IntervalSchedule:
    count, period = interval_for(every)
    # IntervalSchedule has no unique constraint; reuse the oldest matching row.
    existing = IntervalSchedule.objects.filter(every=count, period=period).order_by("pk").first()
    return existing or IntervalSchedule.objects.create(every=count, period=period)


def _wanted(entry: ScheduleEntry, interval: IntervalSchedule) -> dict[str, object]:
    return {
        "task": entry.task,
        "interval": interval,
        "crontab": None,
        "solar": None,
        "clocked": None,
        "args": "[]",
        "kwargs": "{}",
        "queue": entry.queue,
        "exchange": None,
        "routing_key": None,
        "expires": None,
        "expire_seconds": entry.expire_seconds,
        "one_off": False,
        "start_time": None,
        "enabled": True,
        "description": entry.description,
    }


def periodic_tasks_sync(*, entries: tuple[ScheduleEntry, ...] = SCHEDULE) -> SyncResult:
    """Make django-celery-beat's PeriodicTasks match `entries` (by name), and disable our
    entries that are no longer declared. Idempotent: a second run writes nothing."""
    names = [entry.name for entry in entries]
    if len(set(names)) != len(names):
        raise ValueError("schedule entry names must be unique")
    if any(not name.startswith(PREFIX) for name in names):
        raise ValueError(f"schedule entry names must start with {PREFIX!r}")
    result = SyncResult(created=[], updated=[], unchanged=[], disabled=[])
    with transaction.atomic():
        for entry in entries:
            wanted = _wanted(entry, _interval_schedule(entry.every))
            task = PeriodicTask.objects.select_for_update().filter(name=entry.name).first()
            if task is None:
                PeriodicTask.objects.create(name=entry.name, **wanted)
                result.created.append(entry.name)
                continue
            stale = {
                field: value for field, value in wanted.items() if getattr(task, field) != value
            }
            if not stale:
                result.unchanged.append(entry.name)
                continue
            for field, value in stale.items():
                setattr(task, field, value)
            task.save()  # save(), not update(): it tells beat the schedule changed
            result.updated.append(entry.name)
        undeclared = (
            PeriodicTask.objects.select_for_update()
            .filter(name__startswith=PREFIX, enabled=True)
            .exclude(name__in=names)
            .order_by("name")
        )
        for task in undeclared:
            task.enabled = False
            task.save()
            result.disabled.append(task.name)
    return result
