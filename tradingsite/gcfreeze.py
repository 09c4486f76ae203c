"""Start-up objects out of the garbage collector's sight, in every long-running process.

A Django process holds ~110,000-135,000 objects once it has started (modules, classes, the URL
resolver, Celery's tasks and tracers), and they live as long as the process. CPython's full
collection walks every one of them each time, holding the whole process: 70-170 ms a time in
a Celery worker on the bench stack here (2026-12-05, docs/performance.md, "Garbage
collection"), long enough to show in any order's latency that meets it, and the market-data
process holds a quote's row lock meanwhile. `gc.freeze()` moves them to a generation no
collection visits; what the process allocates afterwards is collected as before.

Called once a process is ready to work: the web (tradingsite/wsgi.py), the Celery worker's
parent and each prefork child, beat (tradingsite/celery.py), the market-data loop
(run_market_data).
"""

from __future__ import annotations

import gc
import logging
import os

logger = logging.getLogger(__name__)


def freeze_startup_objects(process: str) -> int:
    """Collect what start-up left as garbage, then freeze every object left. Answers how many
    objects are frozen in this process now (those frozen before included)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info(
        "gc: %s (pid %d) froze its start-up objects: %d",
        process,
        os.getpid(),
        frozen,
        extra={"role": process, "frozen": frozen},
    )
    return frozen
