"""Who or what caused an event, as the string stored on OrderEvent.actor."""

from typing import Any


def user_actor(user: Any) -> str:
    return f"user:{user.get_username()}" if user is not None else "user:anonymous"


def admin_actor(user: Any) -> str:
    return f"admin:{user.get_username()}"


def venue_actor(venue: str) -> str:
    return f"venue:{venue}"


WORKER = "worker"
BEAT = "system:beat"
SYSTEM = "system"
