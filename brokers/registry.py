"""Which adapter serves which venue name. One adapter instance per process and venue."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from .base import VenueAdapter, VenueRejected


@cache
def venue_for(name: str) -> VenueAdapter:
    if name == "sim":
        from .sim.venue import SimulatedVenue

        return SimulatedVenue(name="sim", config=settings.SIM_VENUE)
    raise VenueRejected(f"unknown venue {name!r}", code="unknown_venue")


def venue_names() -> list[str]:
    return ["sim"]


def reset() -> None:
    """Forget cached adapters (tests that change venue settings)."""
    venue_for.cache_clear()
