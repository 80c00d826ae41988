"""Scope rules, the feature flags of a rollout policy: pure functions of plain values.

A rule is a JSON object whose conditions are ANDed; a policy's rules are ORed:

    {"name": "north-day",
     "regions": ["north"], "regions_not": ["west"],
     "windows": [{"start": "22:00", "end": "06:00"}],      # local wall-clock time, [start, end)
     "weekdays": ["mon", "tue", "wed", "thu", "fri"],      # weekday of the local capture date
     "dates": {"from": "2026-05-01", "until": "2026-06-30"},  # local capture date, inclusive
     "percent": 25,                                        # sticky share of cases, 0-100
     "group": "digits",                                    # bucketing group (default: deployment)
     "confidence_threshold": 0.95}                         # overrides the policy's threshold

Time conditions read the capture time in the region's own time zone, so a window is wall-clock
time there, on DST change days too (a window start that does not exist that day still opens at
the first local time after it; a repeated hour is inside the window both times).

The sticky percentage is Unleash's gradual-rollout bucketing: murmur3_x86_32 of
"{group}:{case_key}" (seed 0) modulo 100, plus 1, in scope when the bucket is at most the
percentage. The bucket of a case never changes, so raising the percentage only adds cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import mmh3

from .stages import Stage

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RULE_KEYS = frozenset({"name", "regions", "regions_not", "windows", "weekdays", "dates",
                       "percent", "group", "confidence_threshold"})
AUDIT_RESOLUTION = 10_000
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
DAY_SECONDS = 24 * 3600


class ScopeError(ValueError):
    """An invalid rule; `field` names the input at fault, e.g. `rules[0].percent`."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


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


# --- validation -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ScopeError("expected a list of strings", field=field)
    return value


def rule_validate(rule: Any, *, index: int, region_codes: Iterable[str]) -> dict[str, Any]:
    """Check one rule and return it in canonical form; raise ScopeError naming the field."""
    at = f"rules[{index}]"
    if not isinstance(rule, dict):
        raise ScopeError("a rule must be an object", field=at)
    unknown = sorted(set(rule) - RULE_KEYS)
    if unknown:
        known = ", ".join(sorted(RULE_KEYS))
        raise ScopeError(f"unknown condition {unknown[0]!r} (known: {known})",
                         field=f"{at}.{unknown[0]}")
    known_regions = set(region_codes)
    out: dict[str, Any] = {}
    name = rule.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ScopeError("a rule needs a name of 1-100 characters", field=f"{at}.name")
    out["name"] = name.strip()
    for key in ("regions", "regions_not"):
        if key in rule:
            codes = _string_list(rule[key], f"{at}.{key}")
            for code in codes:
                if code not in known_regions:
                    raise ScopeError(f"unknown region {code!r} (known: "
                                     f"{', '.join(sorted(known_regions))})", field=f"{at}.{key}")
            if key == "regions" and not codes:
                raise ScopeError("an empty region list matches no case", field=f"{at}.{key}")
            out[key] = sorted(set(codes))
    if "windows" in rule:
        windows = rule["windows"]
        if not isinstance(windows, list) or not windows:
            raise ScopeError("windows must be a non-empty list of {start, end}",
                             field=f"{at}.windows")
        out["windows"] = []
        for j, window in enumerate(windows):
            where = f"{at}.windows[{j}]"
            if not isinstance(window, dict) or set(window) != {"start", "end"}:
                raise ScopeError("a window is {\"start\": \"HH:MM\", \"end\": \"HH:MM\"}",
                                 field=where)
            try:
                start, end = clock_seconds(str(window["start"])), clock_seconds(str(window["end"]))
            except ValueError as exc:
                raise ScopeError(str(exc), field=where) from exc
            if start == end:
                raise ScopeError("an empty window: start equals end", field=where)
            out["windows"].append({"start": window["start"], "end": window["end"]})
    if "weekdays" in rule:
        days = _string_list(rule["weekdays"], f"{at}.weekdays")
        bad = [d for d in days if d not in WEEKDAYS]
        if bad or not days:
            raise ScopeError(f"weekdays are a non-empty list of {', '.join(WEEKDAYS)}",
                             field=f"{at}.weekdays")
        out["weekdays"] = [d for d in WEEKDAYS if d in days]
    if "dates" in rule:
        dates = rule["dates"]
        if not isinstance(dates, dict) or not dates or set(dates) - {"from", "until"}:
            raise ScopeError("dates is {\"from\": \"YYYY-MM-DD\", \"until\": \"YYYY-MM-DD\"}",
                             field=f"{at}.dates")
        parsed: dict[str, date] = {}
        for key, value in dates.items():
            try:
                parsed[key] = date.fromisoformat(str(value))
            except ValueError as exc:
                raise ScopeError(f"expected a date as YYYY-MM-DD, got {value!r}",
                                 field=f"{at}.dates.{key}") from exc
        if "from" in parsed and "until" in parsed and parsed["from"] > parsed["until"]:
            raise ScopeError("an empty date range: from is after until", field=f"{at}.dates")
        out["dates"] = {k: v.isoformat() for k, v in sorted(parsed.items())}
    if "percent" in rule:
        percent = rule["percent"]
        if not _is_number(percent) or not 0 <= percent <= 100:
            raise ScopeError("percent must be a number from 0 to 100", field=f"{at}.percent")
        out["percent"] = percent
    if "group" in rule:
        group = rule["group"]
        if not isinstance(group, str) or not group.strip():
            raise ScopeError("group must be a non-empty string", field=f"{at}.group")
        out["group"] = group
    if "confidence_threshold" in rule:
        threshold = rule["confidence_threshold"]
        if not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ScopeError("confidence_threshold must be between 0 and 1",
                             field=f"{at}.confidence_threshold")
        out["confidence_threshold"] = threshold
    return out


def rules_validate(rules: Any, *, region_codes: Iterable[str]) -> list[dict[str, Any]]:
    """Check every rule; names must be unique (a Decision records the rule by name)."""
    if not isinstance(rules, list):
        raise ScopeError("rules must be a list of rule objects", field="rules")
    codes = list(region_codes)
    out = [rule_validate(rule, index=i, region_codes=codes) for i, rule in enumerate(rules)]
    seen: set[str] = set()
    for i, rule in enumerate(out):
        if rule["name"] in seen:
            raise ScopeError(f"two rules are named {rule['name']!r}", field=f"rules[{i}].name")
        seen.add(rule["name"])
    return out


# --- plain words ------------------------------------------------------------------------


def _and_list(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"


def _pct(value: float) -> str:
    return f"{value:g}%"


def rule_describe(rule: Mapping[str, Any], *, policy_threshold: float) -> str:
    """One rule in plain words, e.g. 'cases from regions north and east captured 08:00-18:00
    local time, 25% of them, when its confidence is at least 0.90'."""
    parts = ["cases"]
    if rule.get("regions"):
        regions = list(rule["regions"])
        parts.append(f"from region{'s' if len(regions) > 1 else ''} {_and_list(regions)}")
    else:
        parts.append("from every region")
    if rule.get("regions_not"):
        parts.append(f"except {_and_list(list(rule['regions_not']))}")
    if rule.get("windows"):
        spans = [f"{w['start']}-{w['end']}" for w in rule["windows"]]
        parts.append(f"captured {' or '.join(spans)} local time")
    if rule.get("weekdays"):
        parts.append(f"on {_and_list([d.capitalize() for d in rule['weekdays']])}")
    dates = rule.get("dates") or {}
    if dates.get("from") and dates.get("until"):
        parts.append(f"from {dates['from']} to {dates['until']}")
    elif dates.get("from"):
        parts.append(f"from {dates['from']} on")
    elif dates.get("until"):
        parts.append(f"until {dates['until']}")
    text = " ".join(parts)
    if rule.get("percent") is not None:
        text += f", {_pct(rule['percent'])} of them"
    threshold = rule.get("confidence_threshold", policy_threshold)
    return f"{text}, when its confidence is at least {threshold:.2f}"


def policy_describe(spec: Mapping[str, Any]) -> list[str]:
    """The scope of a policy (see `PolicyVersion.spec`) as sentences."""
    stage = spec["stage"]
    threshold = float(spec["confidence_threshold"])
    if stage == Stage.SHADOW:
        lines = ["The model decides no case: reviewers decide every case, blind to the model."]
    elif stage == Stage.PAUSED:
        lines = ["Automation is paused: every new case goes to reviewers."]
    elif stage == Stage.FULL:
        lines = [f"The model decides every case when its confidence is at least "
                 f"{threshold:.2f}."]
    elif not spec["rules"]:
        lines = ["The scope is empty: the model decides no case."]
    else:
        lines = [f"The model decides {rule_describe(r, policy_threshold=threshold)}"
                 f" (rule {r['name']})." for r in spec["rules"]]
    if stage not in (Stage.SHADOW, Stage.PAUSED):
        lines.append("Out-of-domain cases always go to reviewers; "
                     f"{_pct(float(spec['audit_rate']) * 100)} of the model's decisions are "
                     "audited by a blind review.")
    for rule_name, region in spec.get("paused_cells") or ():
        lines.append(f"Paused by a guardrail: region {region} under rule {rule_name}.")
    return lines


# --- widening and diffs -----------------------------------------------------------------

STAGE_RANK = {Stage.SHADOW: 0, Stage.PAUSED: 0, Stage.LIMITED: 1, Stage.EXPANDING: 1,
              Stage.FULL: 2}


def _minutes(rule: Mapping[str, Any]) -> set[int]:
    if not rule.get("windows"):
        return set(range(24 * 60))
    out: set[int] = set()
    for w in rule["windows"]:
        start, end = clock_seconds(w["start"]) // 60, clock_seconds(w["end"]) // 60
        out.update(m for m in range(24 * 60) if window_contains(start, end, m))
    return out


def rule_within(new: Mapping[str, Any], old: Mapping[str, Any], *, new_threshold: float,
                old_threshold: float, all_regions: Iterable[str]) -> bool:
    """Does `new` select only cases that `old` selects, at no lower confidence threshold?"""
    everywhere = set(all_regions)
    new_regions = set(new.get("regions") or everywhere) - set(new.get("regions_not") or ())
    old_regions = set(old.get("regions") or everywhere) - set(old.get("regions_not") or ())
    if not new_regions <= old_regions:
        return False
    if not _minutes(new) <= _minutes(old):
        return False
    if not set(new.get("weekdays") or WEEKDAYS) <= set(old.get("weekdays") or WEEKDAYS):
        return False
    new_dates, old_dates = new.get("dates") or {}, old.get("dates") or {}
    if old_dates.get("from") and (new_dates.get("from") or "") < old_dates["from"]:
        return False
    if old_dates.get("until") and (new_dates.get("until") or "9999") > old_dates["until"]:
        return False
    old_percent = old.get("percent")
    if old_percent is not None:
        new_percent = new.get("percent")
        if new_percent is None or new_percent > old_percent or new.get("group") != old.get(
                "group"):
            return False
    return (new.get("confidence_threshold", new_threshold)
            >= old.get("confidence_threshold", old_threshold))


def widening(old: Mapping[str, Any], new: Mapping[str, Any], *,
             all_regions: Iterable[str]) -> list[str]:
    """Why `new` lets the model decide cases that `old` does not (empty: not a widening).

    Structural and conservative: a change that might widen is reported as one.
    """
    regions = list(all_regions)
    old_rank, new_rank = STAGE_RANK[old["stage"]], STAGE_RANK[new["stage"]]
    if new_rank == 0:
        return []
    if new_rank == 1 and not new["rules"]:
        return []
    reasons: list[str] = []
    if new_rank > old_rank:
        reasons.append(f"stage {old['stage']} → {new['stage']}")
    if new_rank == 1 and old_rank >= 1:
        for rule in new["rules"]:
            threshold = rule.get("confidence_threshold", new["confidence_threshold"])
            if old_rank == 2 and threshold >= old["confidence_threshold"]:
                continue
            if old_rank == 1 and any(
                    rule_within(rule, prior, new_threshold=new["confidence_threshold"],
                                old_threshold=old["confidence_threshold"], all_regions=regions)
                    for prior in old["rules"]):
                continue
            reasons.append(f"rule {rule['name']} selects cases the current scope does not")
    if new_rank == 2 and old_rank == 2 and (
            new["confidence_threshold"] < old["confidence_threshold"]):
        reasons.append(f"confidence threshold {old['confidence_threshold']:.2f} → "
                       f"{new['confidence_threshold']:.2f}")
    lifted = ({tuple(c) for c in old.get("paused_cells") or ()}
              - {tuple(c) for c in new.get("paused_cells") or ()})
    if lifted and old_rank >= 1:
        reasons.extend(f"guardrail pause lifted: region {region} under rule {name}"
                       for name, region in sorted(lifted))
    return reasons


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def policy_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """What changed from one policy spec to the next, one readable line per change."""
    if old is None:
        return ["first version"]
    lines: list[str] = []
    for key in ("stage", "confidence_threshold", "audit_rate"):
        if old[key] != new[key]:
            lines.append(f"{key.replace('_', ' ')}: {_fmt(old[key])} → {_fmt(new[key])}")
    old_rules = {r["name"]: r for r in old["rules"]}
    new_rules = {r["name"]: r for r in new["rules"]}
    for name, rule in new_rules.items():
        if name not in old_rules:
            lines.append(f"rule {name} added: {_fmt(rule)}")
            continue
        prior = old_rules[name]
        for key in sorted(set(rule) | set(prior)):
            if rule.get(key) != prior.get(key):
                lines.append(f"rule {name}: {key} {_fmt(prior.get(key, '—'))} → "
                             f"{_fmt(rule.get(key, '—'))}")
    lines.extend(f"rule {name} removed" for name in old_rules if name not in new_rules)
    old_cells = {tuple(c) for c in old.get("paused_cells") or ()}
    new_cells = {tuple(c) for c in new.get("paused_cells") or ()}
    lines.extend(f"paused: region {region} under rule {name}"
                 for name, region in sorted(new_cells - old_cells))
    lines.extend(f"resumed: region {region} under rule {name}"
                 for name, region in sorted(old_cells - new_cells))
    if (old.get("guardrails") or {}) != (new.get("guardrails") or {}):
        lines.append(f"guardrails: {_fmt(old.get('guardrails') or {})} → "
                     f"{_fmt(new.get('guardrails') or {})}")
    return lines or ["no change to the scope"]
