"""The report's line chart over days: a line never joins two days that are not next to each
other, nor runs across a day without a value."""

from __future__ import annotations

import re

from rollout.reports.charts import lines


def subpaths(svg: str) -> list[int]:
    """The number of points in each line the chart draws, in order."""
    [path] = re.findall(r'<path d="([^"]+)"', svg)
    return [len(line.split(" L")) for line in path.split(" M")]


def test_a_line_breaks_where_days_are_left_out_or_have_no_value():
    days = ["1900-01-01", "2026-11-18", "2026-11-19", "2026-11-20", "2026-11-22", "2026-11-23"]

    assert subpaths(lines(days, [("agreement", "#000", [0.9] * 6)], title="t")) == [1, 3, 2]
    assert subpaths(lines(days, [("agreement", "#000", [0.9, 0.8, None, 0.7, 0.6, 0.5])],
                          title="t")) == [1, 1, 1, 2]


def test_consecutive_days_make_one_line():
    days = ["2026-11-18", "2026-11-19", "2026-11-20"]

    assert subpaths(lines(days, [("agreement", "#000", [0.9, 0.8, 0.7])], title="t")) == [3]
