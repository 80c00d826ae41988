"""One way to show a moment on every page: `{% moment value zone %}`.

A case's times read in its region's own time zone, with the zone's name, and the UTC time on
hover; times that belong to no case (a policy version, an alert) read in UTC:

    <time datetime="2026-06-01T06:30:00+00:00" title="2026-06-01 06:30:00 UTC">
        2026-06-01 08:30 CEST</time>

The template engine's `date` filter would convert to the server's zone; this tag converts to
the zone it is given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django import template
from django.utils.html import format_html

register = template.Library()


def _zone(zone: object) -> ZoneInfo | None:
    if isinstance(zone, ZoneInfo):
        return zone
    if isinstance(zone, str) and zone:
        try:
            return ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return None
    return None


@register.simple_tag
def moment(value: datetime | None, zone: object = None, seconds: bool = False) -> str:
    """`value` in `zone` (a region's zone name or ZoneInfo; UTC when none), the UTC time on
    hover. Empty for no value."""
    if value is None or value == "":
        return ""
    utc = value.astimezone(UTC)
    there = _zone(zone)
    shown = utc.astimezone(there) if there is not None else utc
    clock = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    name = shown.tzname() or "UTC"
    # Zones without an abbreviation name themselves "+03"; say which offset it is.
    if name[0] in "+-":
        name = f"UTC{name}"
    return format_html('<time datetime="{}" title="{}">{} {}</time>', utc.isoformat(),
                       utc.strftime("%Y-%m-%d %H:%M:%S UTC"), shown.strftime(clock), name)
