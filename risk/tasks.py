from celery import shared_task

from .breakers import breakers_evaluate


@shared_task(
    name="risk.evaluate_breakers",
    queue="housekeeping",
    acks_late=True,
    soft_time_limit=20,
    time_limit=30,
    expires=30,
)
def evaluate_breakers_task(account: str | None = None) -> int:
    """Beat runs it for every breaker; a fill runs it for the fill's account."""
    return len(breakers_evaluate(account=account))
