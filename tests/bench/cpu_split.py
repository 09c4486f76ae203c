"""Where the CPU goes: one load phase on the bench stack, and the CPU seconds each process
group used during it (web, worker, PostgreSQL, Redis, market data, beat, the load generator),
per order and in all. On two shared cores the throughput is the machine's CPU divided by the
CPU an order costs everywhere; this says where that cost is.

    python -m tests.bench.cpu_split                      # 50 clients posting single orders, 20 s
    python -m tests.bench.cpu_split --phase batch        # 4 clients posting batches of 200
    python -m tests.bench.cpu_split --phase submit       # 1 client, 300 resting orders in a row
    python -m tests.bench.cpu_split --phase fill         # 1 client, 100 market orders in a row
    python -m tests.bench.cpu_split --seconds 30 --json  # the figures as JSON

Needs what `make bench` needs (PostgreSQL, Redis); it uses the same stack and load phases
(tests/bench/stack.py, tests/bench/load.py) and the same database, so not while a bench runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import psutil

from . import load
from .stack import Stack

GROUPS = ("web", "worker", "postgres", "redis", "marketdata", "beat", "loadgen")


def _group(process: psutil.Process) -> str | None:
    if process.pid == os.getpid():
        return "loadgen"
    name = process.info["name"] or ""
    command = " ".join(process.info["cmdline"] or [])
    if "gunicorn" in command:
        return "web"
    if "celery" in command:
        return "worker" if " worker" in command else "beat" if " beat" in command else None
    if "run_market_data" in command:
        return "marketdata"
    if name.startswith("postgres"):
        return "postgres"
    if name.startswith("redis"):
        return "redis"
    return None


def cpu_seconds() -> dict[tuple[str, int], float]:
    """CPU seconds (user + system) so far of every process of a group, by (group, pid)."""
    found: dict[tuple[str, int], float] = {}
    for process in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            group = _group(process)
            if group is not None:
                times = process.cpu_times()
                found[(group, process.pid)] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def split(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per group between two readings (processes that started meanwhile count
    from zero; the machine's other processes are not counted)."""
    used = dict.fromkeys(GROUPS, 0.0)
    for key, seconds in after.items():
        used[key[0]] += seconds - before.get(key, 0.0)
    return used


def run(phase: str, seconds: float) -> dict[str, Any]:
    stack = Stack(traders=50)
    stack.prepare()
    stack.start()
    db = load.Db(stack)
    try:
        before, started = cpu_seconds(), time.monotonic()
        if phase == "single":
            figures = load.single_throughput(stack, db, "cpu", 50, seconds, 60)
        elif phase == "batch":
            figures = load.batch_throughput(stack, db, "cpu", 4, 200, seconds, 60)
        elif phase == "submit":
            # The latency phases as make bench runs them; "orders" are the POSTs made, and
            # the resting orders are cancelled after the reading.
            figures = load.post_resting(stack, "cpu", 300, warmup=0)
        else:
            figures = load.fill_latency(stack, "cpu", 100, warmup=0)
        used, wall = split(before, cpu_seconds()), time.monotonic() - started
        if phase == "submit":
            load.cancel_resting(stack, db, "cpu", figures)
    finally:
        db.close()
        stack.stop()
    filled = figures.get("filled") or figures.get("requests") or 0
    return {
        "phase": phase,
        "wall_s": round(wall, 1),
        "cores": psutil.cpu_count(),
        "filled": filled,
        "filled_per_s": figures.get("filled_per_s"),
        "latency_ms": {k: v for k, v in figures.items() if k.endswith("_ms")},
        "cpu_s": {group: round(value, 2) for group, value in used.items()},
        "cpu_ms_per_order": {
            group: round(1000 * value / filled, 2) if filled else None
            for group, value in used.items()
        },
        "cpu_ms_per_order_total": round(1000 * sum(used.values()) / filled, 2) if filled else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=("single", "batch", "submit", "fill"), default="single")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.phase, args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['phase']}: {result['filled']} orders filled in {result['wall_s']} s "
        f"({result['filled_per_s']}/s) on {result['cores']} cores "
        f"({result['cores'] * result['wall_s']:.0f} CPU seconds available)"
    )
    if result["latency_ms"]:
        print(", ".join(f"{k} {v}" for k, v in result["latency_ms"].items()))
    print(f"{'process':<12}{'CPU s':>8}{'ms/order':>10}")
    for group in GROUPS:
        per_order = result["cpu_ms_per_order"][group]
        print(f"{group:<12}{result['cpu_s'][group]:>8.1f}{per_order or 0:>10.2f}")
    total = sum(result["cpu_s"].values())
    print(f"{'all':<12}{total:>8.1f}{result['cpu_ms_per_order_total'] or 0:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
