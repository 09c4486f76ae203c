"""`make bench`: the stack on PostgreSQL + Redis, driven over HTTP, next to the machine's limits.

    python -m tests.bench [--quick] [--runs N] [--rate R] [--skip-limits] [--growth]

1. Machine limits (tests/bench/limits.py: the ../shared/limits scripts) while nothing else runs.
2. A fresh `fillmore_bench` database and Redis dbs 7/8, migrate, seed_demo, 200 traders.
3. The stack with production settings (tests/bench/stack.py): gunicorn (threaded WSGI),
   Celery prefork -c 2, beat, market data; DEBUG=false.
4. Per run (3 in the full profile, 1 with --quick), each over HTTP from this machine
   (tests/bench/load.py): submit latency, fill latency, the concurrency curve, the offered
   load sweep, single-order throughput (50 clients), batch intake throughput.
5. The table (figure, min-max over runs, target of issue 5, machine limit and ratio),
   bench/results.json, bench/results.md, bench/scaling.png (+ docs/performance-scaling.png).
6. With --growth, then tests/bench/growth.py (1,000,000 orders and 10,000,000 events preloaded
   into a database of its own; venue matching with 100,000 resting orders): `growth` in
   bench/results.json. Without it, the last growth figures are kept and said to be.

Everything started is stopped at the end, on Ctrl-C and on SIGTERM; the databases are kept for
inspection (`psql -h 127.0.0.1 -U postgres fillmore_bench`), process logs are in bench/logs/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import load, report
from .limits import LIMIT_KEYS, Limits
from .stack import BENCH_DIR, REPO, Stack, StackError, server_versions


@dataclass(frozen=True)
class Profile:
    name: str
    runs: int
    limit_seconds: int
    celery_tasks: int
    # Samples of the two latency phases. A nearest-rank p99 of 100 samples is their maximum
    # (load.pct): one hiccup of the machine made the figure. From 300 it is the third
    # largest, what the submit phase always had (from 2026-12-05, 10:30; before, 100 fills).
    submit_count: int
    fill_count: int
    single_clients: int
    single_seconds: float
    batch_clients: int
    batch_size: int
    batch_seconds: float
    curve_levels: tuple[int, ...]
    curve_seconds: float
    # The concurrency figure's two levels, 20 and 200 traders, are measured in `curve_pairs`
    # pairs of windows of `curve_pair_seconds` each, one level right after the other (the
    # first level alternating), and the figure is the median of the pairs' growths (see
    # `pair_growths`). Other levels of the curve get one window of `curve_seconds`.
    curve_pairs: int
    curve_pair_seconds: float
    # Offered loads of the sweep, as fractions of the measured capacity (see one_run).
    sweep_fractions: tuple[float, ...]
    sweep_seconds: float
    # Waiting for a phase's orders to finish (batch: twice this); then leftovers are cancelled
    # and the next phase waits at most idle_seconds for the whole book to be quiet.
    drain_seconds: float
    idle_seconds: float


QUICK = Profile(
    name="quick",
    runs=1,
    limit_seconds=3,
    celery_tasks=2000,
    submit_count=100,
    fill_count=100,
    single_clients=50,
    single_seconds=8,
    batch_clients=2,
    batch_size=100,
    batch_seconds=8,
    curve_levels=(1, 20, 100, 200),
    curve_seconds=8,
    curve_pairs=2,
    curve_pair_seconds=4,
    sweep_fractions=(0.25, 0.5, 1.0, 1.5),
    sweep_seconds=4,
    drain_seconds=10,
    idle_seconds=10,
)
FULL = Profile(
    name="full",
    runs=3,
    limit_seconds=10,
    celery_tasks=20000,
    submit_count=300,
    fill_count=300,
    single_clients=50,
    single_seconds=20,
    batch_clients=4,
    batch_size=500,
    batch_seconds=60,
    curve_levels=(1, 20, 100, 200),
    curve_seconds=12,
    curve_pairs=4,
    curve_pair_seconds=6,
    sweep_fractions=(0.25, 0.5, 1.0, 1.5, 2.0),
    sweep_seconds=8,
    drain_seconds=30,
    idle_seconds=15,
)


# --- progress ----------------------------------------------------------------------------------


class Progress:
    """`[####......] 7/31 0:42 what` on stderr: redrawn every second on a terminal, one line per
    step otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.what = ""
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        if self.tty:
            threading.Thread(target=self._tick, daemon=True, name="progress").start()

    def _line(self) -> str:
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        elapsed = int(time.monotonic() - self.started)
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
            f"{elapsed // 60}:{elapsed % 60:02d} {self.what}"
        )

    def _draw(self) -> None:
        with self._lock:
            if self.tty:
                sys.stderr.write("\r\033[K" + self._line()[:150])
            else:
                sys.stderr.write(self._line() + "\n")
            sys.stderr.flush()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw()

    def step(self, what: str) -> None:
        """Start the next step (the previous one counts as done)."""
        if self.what:
            self.done = min(self.done + 1, self.total)
        self.what = what
        self._draw()

    def note(self, text: str) -> None:
        with self._lock:
            sys.stderr.write(("\r\033[K" if self.tty else "") + text + "\n")
            sys.stderr.flush()
        if self.tty:
            self._draw()

    def finish(self) -> None:
        self.done = self.total
        self.what = "done"
        self._draw()
        self._stop.set()
        if self.tty:
            sys.stderr.write("\n")


# --- the run ----------------------------------------------------------------------------------


PAIRED = (20, 200)  # the levels of the concurrency figure, measured in pairs of windows


def curve_windows(profile: Profile) -> list[tuple[int, float, int | None]]:
    """The concurrency curve's windows in the order they run: (traders, seconds, pair), pair
    None for a level measured once. Level 1 first, then the pairs of 20 and 200 traders (the
    first of a pair alternating, so that neither level always follows the other), then the
    other levels."""
    paired = all(lv in profile.curve_levels for lv in PAIRED)
    single = [lv for lv in profile.curve_levels if not (paired and lv in PAIRED)]
    windows: list[tuple[int, float, int | None]] = [
        (lv, profile.curve_seconds, None) for lv in single if lv < PAIRED[0]
    ]
    if paired:
        for pair in range(profile.curve_pairs):
            order = PAIRED if pair % 2 == 0 else PAIRED[::-1]
            windows += [(lv, profile.curve_pair_seconds, pair) for lv in order]
    windows += [(lv, profile.curve_seconds, None) for lv in single if lv >= PAIRED[0]]
    return windows


def count_steps(profile: Profile, skip_limits: bool) -> int:
    per_run = 3 + len(curve_windows(profile)) + len(profile.sweep_fractions) + 1
    limits = 0 if skip_limits else 5 * profile.runs
    return limits + 2 + per_run * profile.runs + 2


def measure_limits(profile: Profile, progress: Progress, notes: list[str]) -> list[dict]:
    runs = []
    for i in range(profile.runs):

        def step(what: str, i: int = i) -> None:
            progress.step(f"{what} (run {i + 1}/{profile.runs})")

        def note(text: str) -> None:
            notes.append(text)
            progress.note(text)

        runs.append(Limits(profile.limit_seconds, profile.celery_tasks, note).measure(step))
    return runs


class StackDied(Exception):
    """A process of the stack exited during the run."""


def one_run(
    stack: Stack, profile: Profile, run: int, calibration: dict, progress: Progress, out: dict
) -> dict[str, Any]:
    """One run of every phase. The capacity is what the first run measures with 50 clients
    (the lower of HTTP intake and fills per second); the concurrency curve's rate (unless
    `calibration["rate"]` is given) is half of it, so that the curve compares concurrency
    levels below saturation on any machine, and the sweep's offered loads are fractions of it.
    Later runs keep the first run's figures, so that their levels line up. Phases are added to
    `out` as they finish: an interrupted run still has those."""
    db = load.Db(stack)
    label = f"(run {run}/{profile.runs})"

    def step(what: str) -> None:
        dead = stack.check_alive()
        if dead:
            raise StackDied("; ".join(dead))
        progress.step(f"{what} {label}")

    def idle() -> None:
        if not load.wait_idle(db, timeout=profile.idle_seconds):
            progress.note(f"warning: orders still open before the next phase {label}")

    try:
        step(f"submit latency, 1 client, {profile.submit_count} limit orders")
        out["submit"] = load.submit_latency(stack, db, f"r{run}sub", profile.submit_count)
        idle()
        step(f"fill latency, 1 client, {profile.fill_count} market orders")
        out["fill"] = load.fill_latency(stack, f"r{run}fill", profile.fill_count)
        idle()
        step(
            f"single-order throughput: {profile.single_clients} clients, "
            f"{profile.single_seconds:g} s"
        )
        out["single"] = load.single_throughput(
            stack, db, f"r{run}single", profile.single_clients, profile.single_seconds,
            profile.drain_seconds,
        )  # fmt: skip
        idle()
        single = out["single"]
        out["capacity_per_s"] = min(
            single.get("accepted_per_s") or 0, single.get("filled_per_s") or 0
        )
        calibration.setdefault("capacity_per_s", out["capacity_per_s"])
        if calibration.get("rate") is None:
            calibration["rate"] = max(5.0, round(calibration["capacity_per_s"] / 2))
        rate = calibration["rate"]
        out["curve_rate_per_s"] = rate
        out["curve"] = []
        for traders, seconds, pair in curve_windows(profile):
            which = "" if pair is None else f", pair {pair + 1}/{profile.curve_pairs}"
            step(f"concurrency: {traders} traders at {rate:g} orders/s total{which}")
            tag = f"r{run}c{traders}" + ("" if pair is None else f"p{pair}")
            level = load.open_loop(
                stack, db, tag, traders, rate, seconds, profile.drain_seconds,
                conns=4 if traders < 20 else 1, keep_samples=True,
            )  # fmt: skip
            level.pop("backlog_series", None)
            level["pair"] = pair
            out["curve"].append(level)
            idle()
        out["sweep"] = []
        base = max(calibration["capacity_per_s"], 4.0)
        for fraction in profile.sweep_fractions:
            offered = max(1.0, round(base * fraction))
            step(f"offered load sweep: {offered:g} orders/s ({fraction:g} x capacity), 50 traders")
            level = load.open_loop(
                stack, db, f"r{run}w{int(fraction * 100)}", 50, offered, profile.sweep_seconds,
                profile.drain_seconds, conns=4,
            )  # fmt: skip
            level["fraction_of_capacity"] = fraction
            out["sweep"].append(level)
            idle()
        step(
            f"batch intake: {profile.batch_clients} clients x {profile.batch_size} orders, "
            f"{profile.batch_seconds:g} s"
        )
        out["batch"] = load.batch_throughput(
            stack, db, f"r{run}batch", profile.batch_clients, profile.batch_size,
            profile.batch_seconds, profile.drain_seconds * 2,
        )  # fmt: skip
        idle()
    finally:
        db.close()
    return out


def pair_growths(curve: list[dict[str, Any]]) -> list[float]:
    """(p99@200 / p99@20 - 1) x 100 of each complete pair of windows of a run's curve, in pair
    order. The two windows of a pair run back to back, so a slow spell of the machine (a
    vacuum, another process) tends to meet both or neither; over windows run minutes apart,
    it met one level and not the other, and the figure swung between -65 % and +195 % on
    unchanged code (docs/performance.md)."""
    pairs: dict[int, dict[int, float]] = {}
    for level in curve:
        p99 = level.get("submit_p99_ms")
        if level.get("pair") is not None and level["traders"] in PAIRED and p99 is not None:
            pairs.setdefault(level["pair"], {})[level["traders"]] = p99
    low, high = PAIRED
    growths = (growth_pct(levels.get(low), levels.get(high)) for _, levels in sorted(pairs.items()))
    return [growth for growth in growths if growth is not None]


def same_level_growths(curve: list[dict[str, Any]]) -> list[float]:
    """The figure's noise, measured beside it: (later p99 / earlier p99 - 1) x 100 of every two
    windows of one paired level that ran back to back (the pairs alternate which level goes
    first, so 20, 200 | 200, 20 | 20, 200 puts two 200s, then two 20s, next to each other).
    Such two windows differ in nothing but their moment, as the two of a pair differ in that
    and in the number of traders: a figure inside the spread of these says nothing of
    concurrency (docs/performance.md, "The concurrency figure's noise")."""
    paired = [lv for lv in curve if lv.get("pair") is not None and lv["traders"] in PAIRED]
    growths = []
    for earlier, later in zip(paired, paired[1:], strict=False):
        if earlier["traders"] == later["traders"]:
            growth = growth_pct(earlier.get("submit_p99_ms"), later.get("submit_p99_ms"))
            if growth is not None:
                growths.append(growth)
    return growths


def growth_pct(p99_20: float | None, p99_200: float | None) -> float | None:
    """The concurrency growth of two p99s: (p99@200 / p99@20 - 1) x 100, one decimal."""
    return round((p99_200 / p99_20 - 1) * 100, 1) if p99_20 and p99_200 is not None else None


def headline(run: dict[str, Any]) -> dict[str, float | None]:
    """The figures of one run (None for a phase an interrupted run did not reach)."""
    growths = pair_growths(run.get("curve", []))
    if growths:
        growth: float | None = statistics.median(growths)
    else:  # runs recorded before the pairs (--summarize of an older file): one window a level
        growth = pooled_growth({level["traders"]: level for level in run.get("curve", [])})
    submit, fill = run.get("submit", {}), run.get("fill", {})
    single, batch = run.get("single", {}), run.get("batch", {})
    events = [e for e in (single.get("events_per_s"), batch.get("events_per_s")) if e is not None]
    return {
        "submit_p50_ms": submit.get("submit_p50_ms"),
        "submit_p99_ms": submit.get("submit_p99_ms"),
        "fill_p50_ms": fill.get("fill_p50_ms"),
        "fill_p99_ms": fill.get("fill_p99_ms"),
        "single_orders_per_s": single.get("filled_per_s"),
        "batch_orders_per_s": batch.get("filled_per_s"),
        "events_per_s": max(events) if events else None,
        "concurrency_p99_growth_pct": None if growth is None else round(growth, 1),
        # supporting figures
        "single_accepted_per_s": single.get("accepted_per_s"),
        "single_fill_p99_ms_under_load": single.get("fill_p99_ms"),
        "single_submit_p99_ms_under_load": single.get("submit_p99_ms"),
        "batch_accepted_per_s": batch.get("accepted_per_s"),
        "batch_backlog_growth_per_s": batch.get("backlog_growth_per_s"),
        "batch_backlog_at_window_end": batch.get("backlog_at_window_end"),
        "single_backlog_at_window_end": single.get("backlog_at_window_end"),
    }


def median_levels(runs: list[list[dict]], key: str, fields: tuple[str, ...]) -> list[dict]:
    """Per level (by `key`), the median of each field over the runs."""
    by_level: dict[Any, list[dict]] = {}
    for levels in runs:
        for level in levels:
            by_level.setdefault(level[key], []).append(level)
    merged = []
    for level_key, levels in sorted(by_level.items()):
        row: dict[str, Any] = {key: level_key}
        for name in fields:
            values = [lv.get(name) for lv in levels if lv.get(name) is not None]
            row[name] = round(statistics.median(values), 2) if values else None
        merged.append(row)
    return merged


def pooled_curve(runs: list[list[dict]]) -> dict[int, dict[str, Any]]:
    """Per concurrency level, the submit latencies of every run pooled into one sample, and its
    p50 and p99. A p99 of one 12 s window (~3,000 submits) is its 30th-slowest and moved by a
    third between runs of one code; the pooled p99 of three windows is their ~90th-slowest."""
    pooled: dict[int, list[float]] = {}
    for levels in runs:
        for level in levels:
            pooled.setdefault(level["traders"], []).extend(level.get("submit_samples_ms") or [])
    return {
        traders: {
            "n": len(values),
            "submit_p50_ms": load.r2(load.pct(values, 50)),
            "submit_p99_ms": load.r2(load.pct(values, 99)),
        }
        for traders, values in sorted(pooled.items())
        if values
    }


def _quartiles(values: list[float]) -> list[float]:
    """The three quartiles of one or more values (inclusive method: within their range)."""
    if len(values) == 1:
        return [values[0]] * 3
    return statistics.quantiles(values, n=4, method="inclusive")


def pair_summary(growths: list[float]) -> dict[str, Any]:
    """The pairs' growths: their median (the figure), quartiles, and how many were worse at
    200 traders."""
    ordered = sorted(growths)
    quartiles = _quartiles(ordered)
    return {
        "n": len(ordered),
        "median": round(statistics.median(ordered), 1),
        "quartiles": [round(q, 1) for q in (quartiles[0], quartiles[2])],
        "worse_at_200": sum(1 for g in ordered if g > 0),
        "values": ordered,
    }


def noise_summary(growths: list[float]) -> dict[str, Any]:
    """Same-level window pairs (`same_level_growths`): how far apart two p99s of one level come
    out, as the median and the quartiles of their differences in size (the sign is only which
    ran first)."""
    sizes = sorted(abs(g) for g in growths)
    quartiles = _quartiles(sizes)
    return {
        "n": len(sizes),
        "median_abs": round(statistics.median(sizes), 1),
        "quartiles_abs": [round(q, 1) for q in (quartiles[0], quartiles[2])],
        "values": sorted(growths),
    }


def pooled_growth(pooled: dict[int, dict[str, Any]]) -> float | None:
    """concurrency_p99_growth_pct of one p99 a level (traders -> its figures): the samples
    pooled per level, or an older file's one window a level."""
    return growth_pct(
        pooled.get(20, {}).get("submit_p99_ms"), pooled.get(200, {}).get("submit_p99_ms")
    )


LEVEL_FIELDS = (
    "offered_per_s",
    "accepted",
    "accepted_per_s",
    "filled_per_s",
    "submit_p50_ms",
    "submit_p99_ms",
    "fill_p50_ms",
    "fill_p99_ms",
    "backlog_at_window_end",
    "errors",
    "peak_db_connections",
    "fraction_of_capacity",
)


def problems_seen(runs: list[dict[str, Any]], logs: dict, dead: list[str]) -> list[str]:
    """Errors, 5xx, lost or stuck orders: stated precisely, never fixed here."""
    found = list(dead)
    for i, run in enumerate(runs, 1):
        phases = [(name, run[name]) for name in ("submit", "fill", "single") if name in run]
        phases += [(f"concurrency {lv['traders']}", lv) for lv in run.get("curve", [])]
        phases += [(f"sweep {lv['offered_per_s']:g}/s", lv) for lv in run.get("sweep", [])]
        phases += [("batch", run["batch"])] if "batch" in run else []
        for name, phase in phases:
            http = phase.get("http", {})
            bad = {k: v for k, v in http.items() if not k.startswith("2")}
            if bad:
                found.append(f"run {i} {name}: HTTP answers other than 2xx: {bad}")
            per_order = phase.get("per_order_status", {})
            bad_orders = {k: v for k, v in per_order.items() if not k.startswith("2")}
            if bad_orders:
                found.append(f"run {i} {name}: per-order batch results not 2xx: {bad_orders}")
            if phase.get("accepted_not_stored"):
                found.append(
                    f"run {i} {name}: {phase['accepted_not_stored']} orders answered 201 but "
                    "not found in the database (lost)"
                )
            if phase.get("still_open"):
                found.append(
                    f"run {i} {name}: {phase['still_open']} orders not finished within the "
                    f"drain cap ({phase.get('drain_wait_s')} s; the harness then cancelled "
                    f"them): {phase.get('final_statuses')}"
                )
            if phase.get("error_answers_but_stored"):
                found.append(
                    f"run {i} {name}: {phase['error_answers_but_stored']} orders were stored "
                    "although their POST was answered with an error or timed out"
                )
            if phase.get("needs_review"):
                found.append(f"run {i} {name}: {phase['needs_review']} orders parked for review")
            statuses = phase.get("final_statuses", {})
            expected = "cancelled" if name == "submit" else "filled"
            odd = {
                k: v
                for k, v in statuses.items()
                if k != expected and k not in load.OPEN_STATUSES  # open ones reported above
            }
            if odd:
                found.append(f"run {i} {name}: orders that ended other than {expected}: {odd}")
    for proc, info in logs.items():
        found.append(
            f"{proc} log (bench/logs/{proc}.log): {info['lines']} error lines, e.g. "
            + " | ".join(info["examples"][:3])
        )
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="one run, short phases (< 5 min)")
    parser.add_argument("--runs", type=int, help="repeat each measurement N times")
    parser.add_argument(
        "--rate",
        type=float,
        help="total offered orders/s of the concurrency curve "
        "(default: half the capacity measured by the first run)",
    )
    parser.add_argument(
        "--conn-max-age",
        type=int,
        default=None,
        help="CONN_MAX_AGE of every process of the stack (default: the project's own, "
        "60 s: one persistent connection per web thread and per worker child)",
    )
    parser.add_argument("--skip-limits", action="store_true", help="do not measure the limits")
    parser.add_argument(
        "--growth",
        action="store_true",
        help="then run the growth bench (python -m tests.bench.growth, --quick with --quick): "
        "1M orders / 10M events preloaded into a database of its own, ~15 min (quick ~4 min)",
    )
    parser.add_argument(
        "--summarize",
        metavar="FILE",
        type=Path,
        help="measure nothing: recompute and print the figures of a results.json",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        return republish(args.summarize)
    profile = QUICK if args.quick else FULL
    if args.runs:
        profile = Profile(**{**profile.__dict__, "runs": args.runs})

    received: list[str] = []

    def on_signal(signum, frame):
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    # Started in the background by a shell, SIGINT may be ignored: make Ctrl-C stop us cleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    progress = Progress(count_steps(profile, args.skip_limits))
    notes: list[str] = []
    stack = Stack(
        traders=max(profile.single_clients, *profile.curve_levels),
        conn_max_age=args.conn_max_age,
    )
    load_before = _loadavg()
    if load_before and float(load_before.split()[0]) > 1.0:
        busy = f"the machine was busy when the bench started (load average {load_before})"
        notes.append(busy + ": figures are noisier than on an idle machine")
        progress.note("warning: " + busy)
    runs: list[dict[str, Any]] = []
    partial: dict[str, Any] = {}
    limit_runs: list[dict] = []
    logs: dict = {}
    dead: list[str] = []
    try:
        if not args.skip_limits:
            limit_runs = measure_limits(profile, progress, notes)
        progress.step(f"set-up: fresh database, migrate, seed, {stack.traders} traders")
        stack.prepare()
        progress.step("starting gunicorn, Celery worker, beat, market data")
        stack.start()
        calibration: dict[str, Any] = {"rate": args.rate}
        for run in range(1, profile.runs + 1):
            partial = {}
            try:
                result = one_run(stack, profile, run, calibration, progress, partial)
            except StackDied as exc:
                dead = [f"a stack process exited during run {run}: {exc}"]
                dead += [
                    f"{p.name} log tail: {p.log_tail(3)}" for p in stack.procs if not p.running()
                ]
                progress.note("bench: " + dead[0] + "; stopping")
                break
            runs.append(result)
        progress.step("stopping the stack")
    except StackError as exc:
        progress.note(f"bench: {exc}")
        return 2
    except KeyboardInterrupt:
        why = received[0] if received else "KeyboardInterrupt"
        interrupted = f"interrupted by {why} after {len(runs)} complete run(s)"
        progress.note(f"bench: {interrupted}; stopping everything")
        if not runs and partial.get("submit"):
            runs.append({**partial, "partial": True})
            interrupted += "; the figures are those of the phases of run 1 that finished"
        elif runs:
            interrupted += ": the figures are from those runs only"
        if not runs:
            return 130
        notes.append(interrupted)
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        queued = {}
        if stack.procs:
            try:
                queued = stack.redis_queue_lengths()
            except Exception:  # Redis gone: nothing to report
                queued = {}
        stack.stop()
        logs = stack.log_problems()
        if stack.autovacuum is not None:
            notes.append(
                "PostgreSQL runs without autovacuum here: the bench vacuumed its database as"
                " autovacuum's default policy would (stack.autovacuum in results.json)"
            )
    if not runs:
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)

    progress.step("report")
    results: dict[str, Any] = {
        "profile": profile.name,
        "runs": len(runs),
        "interrupted": bool(received),
        "command": "make bench" + (f" ARGS='{' '.join(argv)}'" if argv else ""),
        "started_at": started.isoformat(timespec="seconds").replace("+00:00", ""),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", ""),
        "duration_s": round(time.monotonic() - t0, 1),
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "memory_gib": _memory_gib(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
            **server_versions(),
        },
        "stack": stack.settings_summary(),
        "load": {
            "concurrency_rate": "given (--rate)" if args.rate else "half the measured capacity",
            "profile": profile.__dict__,
            "order": "market IOC, 1,000 units of EUR_USD / GBP_USD / USD_JPY; "
            "submit latency: GTC limit orders far from the market",
        },
        "details": runs,
        "limits_details": limit_runs,
        "log_problems": logs,
        "stack_died": dead,
        "queued_tasks_at_stop": queued,
        "notes": notes,
    }
    results.update(previous_growth())
    results = summarize(results)
    publish(results, progress)
    if args.growth and not received:
        growth_argv = ["--quick"] if args.quick else []
        print(
            f"\ngrowth: python -m tests.bench.growth {' '.join(growth_argv)}".rstrip(), flush=True
        )
        done = subprocess.run([sys.executable, "-m", "tests.bench.growth", *growth_argv], cwd=REPO)
        if done.returncode != 0:
            return done.returncode
    return 130 if received else 0


def previous_growth() -> dict[str, Any]:
    """The growth figures of the last bench/results.json, if any: they come from a separate,
    long run (tests/bench/growth.py), so a bench run without --growth keeps them, saying so."""
    path = BENCH_DIR / "results.json"
    try:
        growth = json.loads(path.read_text()).get("growth")
    except (OSError, json.JSONDecodeError):
        return {}
    if not growth:
        return {}
    return {
        "growth": growth,
        "growth_note": (
            f"carried over from the growth run of {growth.get('measured_at')} "
            f"({growth.get('command')}); not re-measured by this run"
        ),
    }


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """The figures of `raw` (what the runs recorded: details, limits_details, log_problems,
    stack_died and the context): medians and spreads, limits, curve, sweep, problems. The
    issue's keys come first in the answer."""
    runs, limit_runs = raw["details"], raw["limits_details"]
    per_run = [headline(run) for run in runs]
    figures = {key: report.spread([h[key] for h in per_run]) for key in per_run[0]}
    # The concurrency figure: the median growth of every pair of windows of every run (from
    # 2026-12-05, 12:10; `pair_growths`), with its quartiles. Before, the p99s of the runs'
    # samples pooled per level (10:30-12:10), and before that the median of the runs' own
    # growths; both stay beside it, the pooled one as the figure of files without pairs.
    pooled = pooled_curve([r.get("curve", []) for r in runs])
    growth = pooled_growth(pooled)
    if growth is not None:
        figures["concurrency_p99_growth_pct"]["pooled"] = growth
    growths = [g for r in runs for g in pair_growths(r.get("curve", []))]
    if growths:
        figures["concurrency_p99_growth_pct"].update(pairs=pair_summary(growths))
    noise = [g for r in runs for g in same_level_growths(r.get("curve", []))]
    if noise:
        figures["concurrency_p99_growth_pct"].update(same_level=noise_summary(noise))
    limit_keys = sorted(
        {k for r in limit_runs for k, v in r.items() if not isinstance(v, str | type(None))}
        | set(LIMIT_KEYS)
    )
    limits_runs = {key: report.spread([r.get(key) for r in limit_runs]) for key in limit_keys}
    limits: dict[str, Any] = {key: limits_runs[key]["median"] for key in LIMIT_KEYS}
    for key in limit_keys:
        limits.setdefault(key, limits_runs[key]["median"])
    tools = [r.get("drf_floor_tool") for r in limit_runs if r.get("drf_floor_tool")]
    limits["drf_floor_tool"] = tools[0] if tools else None
    raw["load"]["concurrency_rate_per_s"] = runs[0].get("curve_rate_per_s")  # may be absent
    raw["load"]["capacity_per_s"] = [r.get("capacity_per_s") for r in runs]
    results: dict[str, Any] = {
        **{key: report.value(figures[key]) for key in report.HEADLINE},
        # Measured by tests/bench/growth.py (--growth); a run without it keeps the last one.
        "growth": raw.get("growth"),
        "growth_note": raw.get("growth_note")
        or (
            "not measured yet: run python -m tests.bench.growth (or make bench ARGS=--growth) "
            "to preload 1,000,000 orders and 10,000,000 events and measure submit p99 and the "
            "venue's matching cost with 100,000 resting orders"
        ),
        "limits": limits,
    }
    results.update({k: v for k, v in raw.items() if k not in results})
    results.update(
        figures=figures,
        limits_runs=limits_runs,
        concurrency_curve=median_levels(
            [r.get("curve", []) for r in runs], "traders", LEVEL_FIELDS
        ),
        concurrency_pooled=pooled,
        scaling=median_levels(
            [r.get("sweep", []) for r in runs], "fraction_of_capacity", LEVEL_FIELDS
        ),
        problems=problems_seen(runs, raw.get("log_problems", {}), raw.get("stack_died", [])),
    )
    return results


def publish(results: dict[str, Any], progress: Progress | None = None) -> None:
    """Chart, bench/results.json and bench/results.md, then the table on stdout."""
    BENCH_DIR.mkdir(exist_ok=True)
    # The chart linked from docs/performance.md comes from the full profile only.
    full = results["profile"] == "full"
    docs_png = REPO / "docs" / "performance-scaling.png" if full else None
    why = report.chart(results, BENCH_DIR / "scaling.png", docs_png)
    results["chart"] = None if why else "bench/scaling.png"
    notes = results["notes"]
    if why and why not in notes:
        notes.append(why)
    (BENCH_DIR / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (BENCH_DIR / "results.md").write_text(report.render_markdown(results))
    if progress is not None:
        progress.finish()

    print()
    print(
        f"make bench: profile {results['profile']}, {results['runs']} run(s), "
        f"{results['duration_s']:.0f} s, CONN_MAX_AGE={results['stack'].get('CONN_MAX_AGE')}"
    )
    print(report.render_table(results))
    print()
    print(report.render_curve(results))
    print()
    print(f"growth: {results['growth_note']}")
    if results["problems"]:
        print("\nproblems seen in the application under load:")
        for problem in results["problems"]:
            print(f"  - {problem}")
    for note in notes:
        print(f"note: {note}")
    print(f"\nwritten: bench/results.json, bench/results.md, {results['chart'] or '(no chart)'}")


def republish(path: Path) -> int:
    """--summarize FILE: the figures of a results.json written earlier, recomputed from its
    details with this code (a changed report, or a run written by an older harness)."""
    raw = json.loads(path.read_text())
    raw.setdefault("log_problems", {})
    raw.setdefault("stack_died", [])
    raw.setdefault("interrupted", False)
    results = summarize(raw)
    if not raw["log_problems"]:  # written by an older harness: keep its log findings
        old = [p for p in raw.get("problems", []) if " log (bench/logs/" in p]
        results["problems"] += [p for p in old if p not in results["problems"]]
    publish(results)
    return 0


def _loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
