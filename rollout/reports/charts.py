"""Charts as SVG drawn on the server: no JavaScript, no CDN; every mark carries its number.

Each function takes plain values and returns SVG markup (safe to embed). The pages also show
the same numbers in tables, so the figures read without the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

BLUE, RED, GREEN, GREY, ORANGE = "#2457c5", "#c53a24", "#2e8b57", "#8793a6", "#e08a00"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _svg(width: int, height: int, body: list[str], title: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every text inside is escaped below
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" {FONT}><title>{escape(title)}</title>'
        + "".join(body) + "</svg>")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[int]], *, title: str,
            row_name: str = "human", col_name: str = "model") -> SafeString:
    """Counts in cells, shaded by their share of the row (recall view); diagonal green."""
    cell = 34 if len(labels) <= 12 else 22
    left, top = 60, 40
    size = cell * len(labels)
    body = [f'<text x="{left + size / 2}" y="14" text-anchor="middle">{escape(col_name)} →'
            "</text>",
            f'<text x="12" y="{top + size / 2}" transform="rotate(-90 12 {top + size / 2})" '
            f'text-anchor="middle">{escape(row_name)} →</text>']
    for j, label in enumerate(labels):
        body.append(f'<text x="{left + j * cell + cell / 2}" y="{top - 6}" '
                    f'text-anchor="middle">{escape(label)}</text>')
    for i, (label, row) in enumerate(zip(labels, matrix, strict=True)):
        total = sum(row) or 1
        y = top + i * cell
        body.append(f'<text x="{left - 6}" y="{y + cell / 2 + 4}" text-anchor="end">'
                    f"{escape(label)}</text>")
        for j, n in enumerate(row):
            share = n / total
            colour = GREEN if i == j else RED
            x = left + j * cell
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{colour}" '
                f'fill-opacity="{0.08 + 0.85 * share:.3f}" stroke="#fff">'
                f"<title>{escape(label)} → {escape(labels[j])}: {n} ({share:.0%} of row)</title>"
                "</rect>")
            if n:
                ink = "#fff" if share > 0.5 else "#1d2330"
                body.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" fill="{ink}" '
                            f'text-anchor="middle">{n}</text>')
    return _svg(left + size + 10, top + size + 10, body, title)


def rate_bars(items: Sequence[tuple[str, float | None, float | None, float | None, int]], *,
              title: str, floor: float | None = None, volume: bool = True) -> SafeString:
    """One bar per item: (name, rate, low, high, n): the rate with its interval as a whisker,
    the sample size under it; a faint bar behind shows the volume relative to the largest."""
    width_each = max(18, min(60, 720 // max(len(items), 1)))
    left, top, h = 40, 16, 150
    width = left + width_each * len(items) + 10
    most = max((n for *_, n in items), default=0) or 1
    body = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="{GREY}"/>',
            f'<line x1="{left}" y1="{top + h}" x2="{width}" y2="{top + h}" stroke="{GREY}"/>']
    for tick in (0, 0.5, 1):
        y = top + h * (1 - tick)
        body.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    if floor is not None:
        y = top + h * (1 - floor)
        body.append(f'<line x1="{left}" y1="{y}" x2="{width}" y2="{y}" stroke="{ORANGE}" '
                    f'stroke-dasharray="4 3"><title>floor {floor:.2f}</title></line>')
    for k, (name, rate, low, high, n) in enumerate(items):
        x = left + k * width_each + 3
        w = width_each - 6
        if volume:
            vh = h * n / most
            body.append(f'<rect x="{x}" y="{top + h - vh}" width="{w}" height="{vh}" '
                        f'fill="{GREY}" fill-opacity="0.18"><title>{escape(name)}: n = {n}'
                        "</title></rect>")
        if rate is not None:
            rh = h * rate
            body.append(f'<rect x="{x + w / 4}" y="{top + h - rh}" width="{w / 2}" '
                        f'height="{rh}" fill="{BLUE}"><title>{escape(name)}: {rate:.3f} '
                        f"(95% {_fmt(low, 3)}-{_fmt(high, 3)}, n = {n})</title></rect>")
            if low is not None and high is not None:
                cx = x + w / 2
                body.append(f'<line x1="{cx}" y1="{top + h * (1 - high)}" x2="{cx}" '
                            f'y2="{top + h * (1 - low)}" stroke="#1d2330"/>')
            body.append(f'<text x="{x + w / 2}" y="{top + h - rh - 3}" text-anchor="middle" '
                        f'font-size="9">{rate:.2f}</text>')
        body.append(f'<text x="{x + w / 2}" y="{top + h + 12}" text-anchor="middle">'
                    f"{escape(name)}</text>")
        body.append(f'<text x="{x + w / 2}" y="{top + h + 24}" text-anchor="middle" '
                    f'font-size="9" fill="{GREY}">{n}</text>')
    return _svg(width, top + h + 30, body, title)


def lines(days: Sequence[str], series: Sequence[tuple[str, str, Sequence[float | None]]], *,
          title: str) -> SafeString:
    """Rates in [0, 1] over days (ISO dates, in order): (name, colour, values); gaps where a
    day has no value, and where the days are not consecutive (a day left out between them)."""
    left, top, h = 40, 16, 150
    width = max(360, min(900, left + 14 * len(days) + 140))
    plot_w = width - left - 130
    step = plot_w / max(len(days) - 1, 1)
    body = [f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + h}" stroke="{GREY}"/>',
            f'<line x1="{left}" y1="{top + h}" x2="{left + plot_w}" y2="{top + h}" '
            f'stroke="{GREY}"/>']
    for tick in (0, 0.5, 1):
        y = top + h * (1 - tick)
        body.append(f'<text x="{left - 4}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    if days:
        body.append(f'<text x="{left}" y="{top + h + 14}">{escape(days[0])}</text>')
        body.append(f'<text x="{left + plot_w}" y="{top + h + 14}" text-anchor="end">'
                    f"{escape(days[-1])}</text>")
    breaks = _days_left_out(days)
    for k, (name, colour, values) in enumerate(series):
        path: list[str] = []
        broken = True  # the next point starts a new line
        for i, value in enumerate(values):
            if value is None:
                broken = True
                continue
            x, y = left + i * step, top + h * (1 - max(0.0, min(1.0, value)))
            path.append(f"{'M' if broken or i in breaks else 'L'}{x:.1f},{y:.1f}")
            broken = False
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{colour}">'
                        f"<title>{escape(days[i])} {escape(name)}: {value:.3f}</title></circle>")
        if path:
            body.append(f'<path d="{" ".join(path)}" fill="none" stroke="{colour}"/>')
        ly = top + 12 + 16 * k
        body.append(f'<rect x="{left + plot_w + 12}" y="{ly - 8}" width="10" height="10" '
                    f'fill="{colour}"/><text x="{left + plot_w + 26}" y="{ly + 1}">'
                    f"{escape(name)}</text>")
    return _svg(width, top + h + 22, body, title)


def _days_left_out(days: Sequence[str]) -> set[int]:
    """The places in `days` that do not follow the day before them."""
    try:
        parsed = [date.fromisoformat(day) for day in days]
    except ValueError:
        return set()
    return {i for i in range(1, len(parsed)) if parsed[i] - parsed[i - 1] != timedelta(days=1)}


def reliability(bins: Sequence[tuple[float, float, float | None, float | None, int]], *,
                title: str) -> SafeString:
    """Reliability diagram: (low, high, mean confidence, agreement, n) per bin, against the
    diagonal a perfectly calibrated model would follow."""
    left, top, s = 40, 12, 220
    body = [f'<rect x="{left}" y="{top}" width="{s}" height="{s}" fill="none" stroke="{GREY}"/>',
            f'<line x1="{left}" y1="{top + s}" x2="{left + s}" y2="{top}" stroke="{GREY}" '
            'stroke-dasharray="4 3"/>',
            f'<text x="{left + s / 2}" y="{top + s + 26}" text-anchor="middle">confidence</text>',
            f'<text x="12" y="{top + s / 2}" transform="rotate(-90 12 {top + s / 2})" '
            'text-anchor="middle">agreement</text>']
    for tick in (0, 0.5, 1):
        body.append(f'<text x="{left + s * tick}" y="{top + s + 12}" text-anchor="middle">'
                    f"{tick:g}</text>")
        body.append(f'<text x="{left - 4}" y="{top + s * (1 - tick) + 4}" text-anchor="end">'
                    f"{tick:g}</text>")
    for low, high, conf, agreement, n in bins:
        if not n or agreement is None:
            continue
        x, w = left + s * low, s * (high - low)
        bh = s * agreement
        body.append(f'<rect x="{x + 1:.1f}" y="{top + s - bh:.1f}" width="{w - 2:.1f}" '
                    f'height="{bh:.1f}" fill="{BLUE}" fill-opacity="0.75"><title>confidence '
                    f"{low:.1f}-{high:.1f}: agreement {agreement:.3f}, mean confidence "
                    f"{_fmt(conf, 3)}, n = {n}</title></rect>")
        if conf is not None:
            cy = top + s * (1 - conf)
            body.append(f'<line x1="{x + 1:.1f}" y1="{cy:.1f}" x2="{x + w - 1:.1f}" '
                        f'y2="{cy:.1f}" stroke="{RED}" stroke-width="2"/>')
    return _svg(left + s + 10, top + s + 32, body, title)


def count_bars(items: Sequence[tuple[str, float]], *, title: str, unit: str = ""
               ) -> SafeString:
    """Horizontal bars for counts or minutes, each labelled with its value."""
    left, bar, gap = 120, 16, 4
    most = max((v for _, v in items), default=0) or 1
    width = 480
    body = []
    for k, (name, value) in enumerate(items):
        y = 4 + k * (bar + gap)
        w = (width - left - 80) * value / most
        body.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(name)}</text>')
        body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{BLUE}"/>')
        body.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}">{value:,.0f}{escape(unit)}'
                    "</text>")
    return _svg(width, 8 + len(items) * (bar + gap), body, title)
