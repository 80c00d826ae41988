"""Validation of scope rules: each rule checked and put in canonical form, or a ScopeError
naming the input at fault."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from .rules import WEEKDAYS, clock_seconds

NAME_MAX = 100
# PostgreSQL stores no NUL character in text or jsonb.
NUL = "\x00"
NO_NUL = "may not contain NUL characters (\\u0000)"

RULE_KEYS = frozenset({"name", "regions", "regions_not", "windows", "weekdays", "dates",
                       "percent", "group", "confidence_threshold"})


class ScopeError(ValueError):
    """An invalid rule; `field` names the input at fault, e.g. `rules[0].percent`."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


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
    if name is not None and (not isinstance(name, str) or len(name.strip()) > NAME_MAX):
        raise ScopeError(f"a rule's name is text of at most {NAME_MAX} characters "
                         "(leave it out to have one made from the conditions)",
                         field=f"{at}.name")
    if name is not None and NUL in name:
        raise ScopeError(f"a rule's name {NO_NUL}", field=f"{at}.name")
    if name is not None and name.strip():
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
        if NUL in group:
            raise ScopeError(f"group {NO_NUL}", field=f"{at}.group")
        out["group"] = group
    if "confidence_threshold" in rule:
        threshold = rule["confidence_threshold"]
        if not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ScopeError("confidence_threshold must be between 0 and 1",
                             field=f"{at}.confidence_threshold")
        out["confidence_threshold"] = threshold
    return out


def rule_name_make(rule: Mapping[str, Any]) -> str:
    """A name read from a (canonical) rule's conditions, e.g. "north-0800-1800-25pct"."""
    parts: list[str] = list(rule.get("regions") or [])
    parts.extend(f"not-{code}" for code in rule.get("regions_not") or ())
    for window in rule.get("windows") or ():
        parts.append(f"{window['start'].replace(':', '')}-{window['end'].replace(':', '')}")
    days = rule.get("weekdays")
    if days:
        span = WEEKDAYS[WEEKDAYS.index(days[0]):WEEKDAYS.index(days[-1]) + 1]
        contiguous = len(days) > 2 and list(span) == list(days)
        parts.append(f"{days[0]}-{days[-1]}" if contiguous else "-".join(days))
    dates = rule.get("dates") or {}
    if dates.get("from"):
        parts.append(f"from-{dates['from']}")
    if dates.get("until"):
        parts.append(f"until-{dates['until']}")
    if rule.get("percent") is not None:
        parts.append(f"{rule['percent']:g}pct")
    if rule.get("confidence_threshold") is not None:
        parts.append(f"conf{rule['confidence_threshold']:g}")
    return "-".join(parts)[:NAME_MAX].rstrip("-") or "every-case"


def rules_validate(rules: Any, *, region_codes: Iterable[str]) -> list[dict[str, Any]]:
    """Check every rule; names must be unique (a Decision records the rule by name).

    A rule without a name (or with a blank one) gets one made from its conditions
    (`rule_name_make`), with "-2", "-3"... added where that name is taken.
    """
    if not isinstance(rules, list):
        raise ScopeError("rules must be a list of rule objects", field="rules")
    codes = list(region_codes)
    out = [rule_validate(rule, index=i, region_codes=codes) for i, rule in enumerate(rules)]
    seen: set[str] = set()
    for i, rule in enumerate(out):
        if "name" not in rule:
            continue
        if rule["name"] in seen:
            raise ScopeError(f"two rules are named {rule['name']!r}", field=f"rules[{i}].name")
        seen.add(rule["name"])
    for i, rule in enumerate(out):
        if "name" in rule:
            continue
        base = name = rule_name_make(rule)
        n = 1
        while name in seen:
            n += 1
            suffix = f"-{n}"
            name = base[:NAME_MAX - len(suffix)] + suffix
        seen.add(name)
        out[i] = {"name": name, **rule}
    return out
