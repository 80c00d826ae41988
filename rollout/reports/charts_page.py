"""The report's charts, drawn from a built Report."""

from __future__ import annotations

from django.utils.safestring import SafeString

from . import charts
from .figures import Report, Slice


def _bars(slices: list[Slice]) -> list[tuple[str, float | None, float | None, float | None,
                                               int]]:
    return [(str(s.key), s.agreement.rate, s.agreement.low, s.agreement.high, s.n)
            for s in slices]


def report_charts(report: Report) -> dict[str, SafeString]:
    h, sl = report.headline, report.slices
    days = [d.key.isoformat() for d in sl.by_day]
    return {
        "confusion": charts.heatmap(h.labels, h.confusion,
                                    title="confusion: human decision by model answer"),
        "region": charts.rate_bars(_bars(sl.by_region), title="agreement by region"),
        "hour": charts.rate_bars(_bars(sl.by_hour), title="agreement by local hour of capture"),
        "weekday": charts.rate_bars(_bars(sl.by_weekday), title="agreement by local weekday"),
        "classes": charts.rate_bars(
            [(c.label, c.recall, c.recall_interval.low, c.recall_interval.high, c.support)
             for c in h.classes], title="recall of the model per human label"),
        "daily": charts.lines(days, [
            ("agreement", charts.BLUE, [d.agreement.rate for d in sl.by_day]),
            ("automation", charts.GREEN, [d.automation_rate for d in sl.by_day]),
            ("out of domain", charts.RED, [d.ood_rate for d in sl.by_day]),
            ("mean confidence", charts.ORANGE, [d.mean_confidence for d in sl.by_day]),
        ], title="daily: agreement, automation, out-of-domain rate, mean confidence"),
        "inputs": charts.lines([d.key.isoformat() for d in report.inputs], [
            ("out of domain", charts.RED, [d.ood_rate for d in report.inputs]),
            ("mean confidence", charts.ORANGE, [d.mean_confidence for d in report.inputs]),
        ], title="daily, every predicted case: out-of-domain rate, mean confidence"),
        "reliability": charts.reliability(
            [(b.low, b.high, b.mean_confidence, b.agreement, b.n) for b in h.calibration],
            title="reliability: agreement against confidence"),
        "workload": charts.count_bars(
            [("model decided", report.workload.by_model)]
            + [(r.reason, r.tasks) for r in report.workload.routes],
            title="cases by route"),
    }
