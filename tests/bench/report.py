"""What `make bench` prints and writes: the table, bench/results.json, bench/results.md and the
scaling chart (bench/scaling.png, copied to docs/performance-scaling.png)."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any

# (key, target as text, comparison, target value, machine limit key or None, what the ratio is)
# comparison: "<=" the figure should be at most the target, ">=" at least.
ROWS: tuple[tuple[str, str, str, float | None, str | None], ...] = (
    ("submit_p50_ms", "<= 4", "<=", 4, "drf_floor_p50_ms"),
    ("submit_p99_ms", "<= 8", "<=", 8, "drf_floor_p99_ms"),
    ("fill_p50_ms", "<= 8", "<=", 8, "celery_dispatch_p50_ms"),
    ("fill_p99_ms", "<= 20", "<=", 20, "celery_dispatch_p99_ms"),
    ("single_orders_per_s", ">= 600", ">=", 600, "drf_floor_req_per_s"),
    ("batch_orders_per_s", ">= 1500", ">=", 1500, "celery_noop_tasks_per_s"),
    ("events_per_s", ">= 20000", ">=", 20000, "pg_batched_rows_per_s"),
    ("concurrency_p99_growth_pct", "<= 5", "<=", 5, None),
)
HEADLINE = tuple(row[0] for row in ROWS)
LIMIT_ROWS = (
    "pg_single_insert_tps",
    "pg_batched_rows_per_s",
    "celery_noop_tasks_per_s",
    "celery_dispatch_p50_ms",
    "celery_dispatch_p99_ms",
    "drf_floor_req_per_s",
    "drf_floor_p50_ms",
    "drf_floor_p99_ms",
    "redis_rtt_busy_us",
    "redis_rtt_idle_us",
    "pg_rtt_busy_us",
    "pg_rtt_idle_us",
)


def spread(values: list[float | None]) -> dict[str, Any]:
    """min / median / max of the values that exist (None when none does)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "values": values}
    return {
        "median": round(statistics.median(present), 2),
        "min": round(min(present), 2),
        "max": round(max(present), 2),
        "values": values,
    }


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 10:
        return f"{value:,.0f}"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def verdict(value: float | None, comparison: str, target: float | None) -> str:
    if value is None or target is None:
        return "?"
    ok = value <= target if comparison == "<=" else value >= target
    return "met" if ok else "not met"


def value(figure: dict[str, Any]) -> float | None:
    """A headline figure's value: the median over the runs; for the concurrency growth the
    median over its pairs of windows (tests/bench/__main__.py, `pair_growths`), or in results
    without pairs the figure of the runs' samples pooled per level (`pooled_curve`)."""
    if "pairs" in figure:
        return figure["pairs"]["median"]  # type: ignore[no-any-return]
    return figure.get("pooled", figure["median"])  # type: ignore[no-any-return]


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    limits = results["limits"]
    rows = []
    for key, target_text, comparison, target, limit_key in ROWS:
        figure = results["figures"][key]
        value_ = value(figure)
        runs = "" if figure["min"] is None else f"{fmt(figure['min'])} - {fmt(figure['max'])}"
        limit = limits.get(limit_key) if limit_key else None
        ratio = f"{value_ / limit:.2f}x" if value_ is not None and limit else "-"
        if "pairs" in figure:
            pairs = figure["pairs"]
            runs = (
                f"median of {pairs['n']} pairs, quartiles {fmt(pairs['quartiles'][0])} / "
                f"{fmt(pairs['quartiles'][1])}; runs {runs}"
            )
            noise = figure.get("same_level")
            if noise:
                runs += f"; one level against itself: {fmt(noise['median_abs'])} % apart"
        elif "pooled" in figure:
            runs = f"pooled; runs {runs}"
        rows.append(
            [
                key,
                fmt(value_),
                runs,
                target_text,
                verdict(value_, comparison, target),
                f"{limit_key} {fmt(limit)}" if limit_key else "-",
                ratio,
            ]
        )
    rows.extend(growth_rows(results.get("growth")))
    return rows


def growth_rows(growth: dict[str, Any] | None) -> list[list[str]]:
    """The growth figures (python -m tests.bench.growth) as table rows: submit p99 with the
    history preloaded against the empty database, and the venue's matching cost per quote."""
    if not growth:
        return [
            ["growth (1M orders, 10M events)", "not measured yet", "", "<= +10% p99", "?", "-", "-"]
        ]
    change = growth.get("submit_p99_growth_pct")
    loaded = f"{growth.get('orders') or 0:,} orders, {growth.get('events') or 0:,} events"
    return [
        [
            "submit_p99_growth_pct",
            "-" if change is None else f"{change:+.1f}",
            f"p99 {fmt(growth.get('submit_p99_ms_empty'))} -> "
            f"{fmt(growth.get('submit_p99_ms_loaded'))} ms",
            "<= +10",
            verdict(change, "<=", 10),
            loaded,
            "-",
        ],
        [
            "match_ms_per_quote_100k_p50",
            fmt(growth.get("match_ms_per_quote_100k_p50")),
            f"p99 {fmt(growth.get('match_ms_per_quote_100k_p99'))}",
            "reported",
            "",
            f"1k resting p50 {fmt(growth.get('match_ms_per_quote_1k_p50'))}",
            _ratio(
                growth.get("match_ms_per_quote_100k_p50"), growth.get("match_ms_per_quote_1k_p50")
            ),
        ],
    ]


def _ratio(value: float | None, base: float | None) -> str:
    return f"{value / base:.2f}x" if value is not None and base else "-"


HEADERS = ["figure", "median", "min - max", "target", "", "machine limit (same run)", "ratio"]


def render_table(results: dict[str, Any]) -> str:
    rows = table_rows(results)
    widths = [max(len(str(r[i])) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    lines.append("")
    lines.append(
        "machine limits (this run, ../shared/limits scripts; the round trips p50, back to back"
        " and after 2 ms idle):"
    )
    for key in LIMIT_ROWS:
        lim = results["limits_runs"].get(key, {})
        extra = ""
        if lim.get("min") is not None and lim["min"] != lim["max"]:
            extra = f"  ({fmt(lim['min'])} - {fmt(lim['max'])})"
        lines.append(f"  {key:<26}{fmt(results['limits'].get(key)):>10}{extra}")
    if results["limits"].get("drf_floor_tool"):
        lines.append(f"  drf floor load: {results['limits']['drf_floor_tool']}")
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    rows = table_rows(results)
    out = ["| " + " | ".join(HEADERS[:4] + ["", *HEADERS[5:]]) + " |"]
    out.append("|" + "---|" * len(HEADERS))
    for row in rows:
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    out.append("")
    out.append("| machine limit | median | min - max |")
    out.append("|---|---|---|")
    for key in LIMIT_ROWS:
        lim = results["limits_runs"].get(key, {})
        rng = f"{fmt(lim.get('min'))} - {fmt(lim.get('max'))}" if lim.get("min") else ""
        out.append(f"| {key} | {fmt(results['limits'].get(key))} | {rng} |")
    return "\n".join(out) + "\n"


def render_curve(results: dict[str, Any]) -> str:
    lines = [
        "concurrency curve (same total offered rate, market orders; medians over the windows "
        "of all runs):"
    ]
    lines.append(
        f"  {'traders':>8}{'offered/s':>11}{'201/s':>8}{'n':>6}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'errors':>8}{'peak db conns':>15}"
    )
    for level in results["concurrency_curve"]:
        lines.append(
            f"  {level['traders']:>8}{fmt(level['offered_per_s']):>11}"
            f"{fmt(level['accepted_per_s']):>8}{fmt(level['accepted']):>6}"
            f"{fmt(level['submit_p50_ms']):>9}"
            f"{fmt(level['submit_p99_ms']):>9}{fmt(level['errors']):>8}"
            f"{fmt(level['peak_db_connections']):>15}"
        )
    figure = results["figures"].get("concurrency_p99_growth_pct", {})
    pairs, noise = figure.get("pairs"), figure.get("same_level")
    if pairs:
        lines.append(
            f"  p99 growth 20 -> 200 traders over {pairs['n']} pairs of windows run back to back "
            f"(the concurrency figure): median {fmt(pairs['median'])} %, quartiles "
            f"{fmt(pairs['quartiles'][0])} / {fmt(pairs['quartiles'][1])} %, "
            f"{pairs['worse_at_200']} of {pairs['n']} worse at 200"
        )
    if noise:  # same_level_growths: one level against itself, the same run's windows
        low, high = (fmt(q) for q in noise["quartiles_abs"])
        lines.append(
            f"  the figure's noise: {noise['n']} pairs of windows of one level run back to back "
            f"differ by a median of {fmt(noise['median_abs'])} % (quartiles {low} / {high} %)"
        )
    pooled = results.get("concurrency_pooled") or {}
    if pooled:
        lines.append(
            "  pooled over the runs: "
            + ", ".join(
                f"{traders} traders p50 / p99 {fmt(level['submit_p50_ms'])} / "
                f"{fmt(level['submit_p99_ms'])} ms (n {level['n']:,})"
                for traders, level in pooled.items()
            )
        )
    lines.append("offered load sweep (50 traders, market orders; medians over runs):")
    lines.append(
        f"  {'offered/s':>10}{'201/s':>8}{'filled/s':>10}{'submit p99':>12}{'fill p99':>10}"
        f"{'errors':>8}{'backlog at end':>16}"
    )
    for level in results["scaling"]:
        lines.append(
            f"  {fmt(level['offered_per_s']):>10}{fmt(level['accepted_per_s']):>8}"
            f"{fmt(level['filled_per_s']):>10}{fmt(level['submit_p99_ms']):>12}"
            f"{fmt(level['fill_p99_ms']):>10}{fmt(level['errors']):>8}"
            f"{fmt(level['backlog_at_window_end']):>16}"
        )
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path, copy_to: Path | None) -> str | None:
    """Throughput and p99 against offered load. Answers why not, when no chart was drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[dev]'): no chart"
    levels = [lv for lv in results["scaling"] if lv.get("offered_per_s")]
    if not levels:
        return "no load sweep: no chart"
    offered = [lv["offered_per_s"] for lv in levels]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    left.plot(offered, offered, ":", color="grey", label="offered")
    left.plot(offered, [lv["accepted_per_s"] for lv in levels], "o-", label="accepted (HTTP 201)")
    left.plot(offered, [lv["filled_per_s"] for lv in levels], "s-", label="filled")
    left.set_xlabel("offered load, orders/s (50 traders)")
    left.set_ylabel("orders/s")
    left.set_title("throughput")
    left.grid(alpha=0.3)
    left.legend()
    right.plot(offered, [lv["submit_p99_ms"] for lv in levels], "o-", label="submit p99 (POST)")
    right.plot(offered, [lv["fill_p99_ms"] for lv in levels], "s-", label="POST -> filled p99")
    right.axhline(8, color="tab:blue", ls=":", lw=1, label="submit p99 target 8 ms")
    right.axhline(20, color="tab:orange", ls=":", lw=1, label="fill p99 target 20 ms")
    right.set_yscale("log")
    right.set_xlabel("offered load, orders/s (50 traders)")
    right.set_ylabel("ms (log)")
    right.set_title("p99 latency")
    right.grid(alpha=0.3, which="both")
    right.legend(fontsize=8)
    machine = results["machine"]
    fig.suptitle(
        f"Fillmore make bench: {results['profile']} profile, {results['runs']} run(s), "
        f"CONN_MAX_AGE={results['stack'].get('CONN_MAX_AGE')}, {machine['cpu_count']} cores, "
        f"{results['started_at'][:16]}Z",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    if copy_to is not None:
        shutil.copyfile(path, copy_to)
    return None
