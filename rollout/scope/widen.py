"""What a change of policy widens: the cases the new version lets the model decide that the
current one does not, the changes that need evidence before they are published."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..stages import Stage
from .pauses import Fate, pause_fates
from .rules import WEEKDAYS, clock_seconds, window_contains

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
    if old_rank >= 1:
        # A pause carried to the cell that took its place, or ended with its cell, lets the
        # model decide nothing new; one left out does.
        reasons.extend(f"guardrail pause lifted: region {f.region} under rule "
                       f"{', '.join(f.to)}" for f in pause_fates(old, new)
                       if f.fate == Fate.LIFTED)
    return reasons
