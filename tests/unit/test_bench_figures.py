"""The bench's arithmetic (tests/bench/__main__.py, report.py): which windows the concurrency
curve runs, and how its figure comes out of them. Pure: no stack is started."""

import dataclasses

from tests.bench import report
from tests.bench.__main__ import (
    FULL,
    QUICK,
    count_steps,
    curve_windows,
    headline,
    pair_growths,
    same_level_growths,
    summarize,
)


def window(traders: int, p99: float, pair: int | None, samples: list[float] | None = None):
    return {
        "traders": traders,
        "offered_per_s": 200.0,
        "submit_p50_ms": p99 / 3,
        "submit_p99_ms": p99,
        "pair": pair,
        "submit_samples_ms": samples if samples is not None else [p99 / 3] * 99 + [p99],
        "http": {"201": 100},
        "final_statuses": {"filled": 100},
    }


def test_the_paired_levels_alternate_which_goes_first():
    windows = curve_windows(FULL)
    assert windows[0] == (1, FULL.curve_seconds, None)
    assert windows[-1] == (100, FULL.curve_seconds, None)
    paired = windows[1:-1]
    assert len(paired) == 2 * FULL.curve_pairs
    assert [w[0] for w in paired[:4]] == [20, 200, 200, 20]
    assert {w[1] for w in paired} == {FULL.curve_pair_seconds}
    assert [w[2] for w in paired] == [p for p in range(FULL.curve_pairs) for _ in (0, 1)]
    # the progress bar counts each window as a step
    fewer = dataclasses.replace(FULL, curve_pairs=1)
    assert (
        count_steps(FULL, skip_limits=True) - count_steps(fewer, skip_limits=True)
        == 2 * (FULL.curve_pairs - 1) * FULL.runs
    )


def test_a_curve_without_both_paired_levels_runs_each_level_once():
    profile = dataclasses.replace(QUICK, curve_levels=(1, 20, 100))
    assert curve_windows(profile) == [(1, 8, None), (20, 8, None), (100, 8, None)]


def test_pair_growths_compare_the_two_windows_of_each_pair_only():
    curve = [
        window(1, 5.0, None),
        window(20, 10.0, 0),
        window(200, 12.0, 0),  # +20 %
        window(200, 40.0, 1),
        window(20, 50.0, 1),  # -20 %: a slow spell met both windows of the pair
        window(20, 10.0, 2),  # its 200-trader window is missing (an interrupted run)
        window(100, 99.0, None),
    ]
    assert pair_growths(curve) == [20.0, -20.0]


def test_a_runs_figure_is_the_median_of_its_pairs():
    curve = [window(20, 10.0, 0), window(200, 11.0, 0), window(200, 30.0, 1)]
    curve += [window(20, 10.0, 1), window(20, 20.0, 2), window(200, 19.0, 2)]
    assert headline({"curve": curve})["concurrency_p99_growth_pct"] == 10.0  # of 10, 200, -5


def test_an_older_run_without_pairs_keeps_one_window_a_level():
    curve = [window(20, 10.0, None), window(200, 15.0, None)]
    for level in curve:
        del level["pair"]
    assert headline({"curve": curve})["concurrency_p99_growth_pct"] == 50.0


def test_the_benchs_figure_is_the_median_over_every_runs_pairs():
    runs = [
        {
            "curve": [
                window(20, 10.0, 0),
                window(200, 10.0, 0),
                window(200, 30.0, 1),
                window(20, 10.0, 1),
            ]
        },
        {
            "curve": [
                window(20, 10.0, 0),
                window(200, 9.0, 0),
                window(200, 10.5, 1),
                window(20, 10.0, 1),
            ]
        },
    ]
    raw = {"details": runs, "limits_details": [{}], "load": {}, "notes": []}
    results = summarize(raw)
    figure = results["figures"]["concurrency_p99_growth_pct"]
    assert figure["pairs"]["values"] == [-10.0, 0.0, 5.0, 200.0]
    assert figure["pairs"]["median"] == 2.5
    assert figure["pairs"]["worse_at_200"] == 2
    assert report.value(figure) == 2.5
    assert results["concurrency_p99_growth_pct"] == 2.5
    # the per-run medians (100 and -2.5) stay as the runs' spread, the pooled p99s beside it
    assert (figure["min"], figure["max"]) == (-2.5, 100.0)
    assert "pooled" in figure
    assert f"median {report.fmt(2.5)} %" in report.render_curve(results)
    row = next(r for r in report.table_rows(results) if r[0] == "concurrency_p99_growth_pct")
    assert row[1] == report.fmt(2.5) and row[2].startswith("median of 4 pairs")
    # and its noise: the two 200-trader windows that ran back to back in each run
    # (10 then 30: +200 %; 9 then 10.5: +16.7 %)
    assert figure["same_level"]["values"] == [16.7, 200.0]
    assert figure["same_level"]["median_abs"] == 108.3
    assert f"one level against itself: {report.fmt(108.3)} % apart" in row[2]
    assert "differ by a median of" in report.render_curve(results)


def test_the_noise_compares_the_back_to_back_windows_of_one_level_only():
    curve = [
        window(1, 5.0, None),
        window(20, 10.0, 0),
        window(200, 12.0, 0),
        window(200, 15.0, 1),  # +25 % on the 200-trader window just before it
        window(20, 8.0, 1),
        window(20, 6.0, 2),  # -25 %
        window(200, 99.0, 2),
        window(100, 99.0, None),  # levels measured once are no part of it
        window(100, 50.0, None),
    ]
    assert same_level_growths(curve) == [25.0, -25.0]
    # a run without pairs has no such windows
    assert same_level_growths([window(20, 10.0, None), window(20, 20.0, None)]) == []
