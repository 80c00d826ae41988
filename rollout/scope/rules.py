"""Scope rules, the feature flags of a rollout policy: compiled once, matched per case.

A rule is a JSON object whose conditions are ANDed; a policy's rules are ORed:

    {"name": "north-day",
     "regions": ["north"], "regions_not": ["west"],
     "windows": [{"start": "22:00", "end": "06:00"}],      # local wall-clock time, [start, end)
     "weekdays": ["mon", "tue", "wed", "thu", "fri"],      # weekday of the local capture date
     "dates": {"from": "2026-05-01", "until": "2026-06-30"},  # local capture date, inclusive
     "percent": 25,                                        # sticky share of cases, 0-100
     "group": "digits",                                    # bucketing group (default: deployment)
     "confidence_threshold": 0.95}                         # overrides the policy's threshold

A rule's name is how a Decision, a review task and a guardrail cell refer to it, so names are
unique within a policy. A rule given without a name (or with a blank one) gets one made from
its conditions when it is validated, e.g. "north-0800-1800-25pct" for the north, 08:00-18:00,
25%; a name already taken gets "-2", "-3"... added.

Time conditions read the capture time in the region's own time zone, so a window is wall-clock
time there, on DST change days too (a window start that does not exist that day still opens at
the first local time after it; a repeated hour is inside the window both times).

The sticky percentage is Unleash's gradual-rollout bucketing: murmur3_x86_32 of
"{group}:{case_key}" (seed 0) modulo 100, plus 1, in scope when the bucket is at most the
percentage. The bucket of a case never changes, so raising the percentage only adds cases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import mmh3

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
AUDIT_RESOLUTION = 10_000
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def bucket(group_id: str, case_key: str) -> int:
    """Unleash's normalized bucket, 1-100, of a case within a group."""
    return mmh3.hash(f"{group_id}:{case_key}", seed=0, signed=False) % 100 + 1


def audit_selected(group_id: str, case_key: str, rate: float) -> bool:
    """A sticky audit draw at 1/10,000 resolution, independent of the percentage buckets
    (its group is the deployment's group with ":audit" appended)."""
    if rate <= 0:
        return False
    draw = mmh3.hash(f"{group_id}:audit:{case_key}", seed=0, signed=False) % AUDIT_RESOLUTION
    return draw + 1 <= rate * AUDIT_RESOLUTION


def clock_seconds(value: str) -> int:
    match = _CLOCK.match(value)
    if match is None:
        raise ValueError(f"expected a time of day as HH:MM, got {value!r}")
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60


def window_contains(start: int, end: int, seconds: int) -> bool:
    """Is a local time of day (seconds since local midnight) inside [start, end)?

    A window whose start is after its end runs across midnight (22:00-06:00).
    """
    if start < end:
        return start <= seconds < end
    return seconds >= start or seconds < end


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule parsed once, so that evaluating it per case does no parsing."""

    name: str
    regions: frozenset[str] | None
    regions_not: frozenset[str]
    windows: tuple[tuple[int, int], ...]
    weekdays: frozenset[int] | None
    date_from: date | None
    date_until: date | None
    percent: float | None
    group: str
    confidence_threshold: float | None

    @property
    def needs_local_time(self) -> bool:
        return bool(self.windows or self.weekdays is not None or self.date_from
                    or self.date_until)

    def matches(self, region: str, local: datetime | None, case_key: str) -> bool:
        if self.regions is not None and region not in self.regions:
            return False
        if region in self.regions_not:
            return False
        if self.needs_local_time:
            if local is None:
                return False
            if self.windows:
                seconds = local.hour * 3600 + local.minute * 60 + local.second
                if not any(window_contains(s, e, seconds) for s, e in self.windows):
                    return False
            if self.weekdays is not None and local.weekday() not in self.weekdays:
                return False
            day = local.date() if (self.date_from or self.date_until) else None
            if self.date_from and day is not None and day < self.date_from:
                return False
            if self.date_until and day is not None and day > self.date_until:
                return False
        return self.percent is None or bucket(self.group, case_key) <= self.percent


def rule_compile(rule: Mapping[str, Any], *, group: str = "") -> CompiledRule:
    """Parse a rule (assumed valid: see `rules_validate`) for fast evaluation."""
    regions = rule.get("regions")
    weekdays = rule.get("weekdays")
    dates = rule.get("dates") or {}
    threshold = rule.get("confidence_threshold")
    percent = rule.get("percent")
    return CompiledRule(
        name=str(rule.get("name", "")),
        regions=frozenset(regions) if regions is not None else None,
        regions_not=frozenset(rule.get("regions_not") or ()),
        windows=tuple((clock_seconds(w["start"]), clock_seconds(w["end"]))
                      for w in rule.get("windows") or ()),
        weekdays=(frozenset(WEEKDAYS.index(d) for d in weekdays)
                  if weekdays is not None else None),
        date_from=date.fromisoformat(dates["from"]) if dates.get("from") else None,
        date_until=date.fromisoformat(dates["until"]) if dates.get("until") else None,
        percent=float(percent) if percent is not None else None,
        group=str(rule.get("group") or group),
        confidence_threshold=float(threshold) if threshold is not None else None,
    )
