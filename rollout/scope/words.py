"""A policy's scope, and what changed from one version to the next, in plain words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..stages import Stage
from .pauses import FULL_RULE, Fate, PauseFate, pause_fates, pauses_in_force


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
    for rule_name, region in pauses_in_force(spec):
        lines.append(f"Paused by a guardrail: region {region} under rule {rule_name}.")
    return lines


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        # Keys sorted: a spec read back from PostgreSQL's jsonb has its keys in another order
        # than the one just published, and both must read the same.
        return "{" + ", ".join(f"{k}: {_fmt(value[k])}" for k in sorted(value)) + "}"
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
    lines.extend(line for fate in pause_fates(old, new) if (line := _pause_diff(fate)))
    if (old.get("guardrails") or {}) != (new.get("guardrails") or {}):
        lines.append(f"guardrails: {_fmt(old.get('guardrails') or {})} → "
                     f"{_fmt(new.get('guardrails') or {})}")
    return lines or ["no change to the scope"]


_AUTOMATED = (Stage.LIMITED, Stage.EXPANDING)


def _rules(names: Sequence[str]) -> str:
    return f"rule{'s' if len(names) > 1 else ''} {_and_list(list(names))}"


def _pause_diff(fate: PauseFate) -> str:
    """A pause's fate as a line of a version's diff ('' when it stays as it was)."""
    where = f"region {fate.region} under rule {fate.rule}"
    if fate.fate == Fate.ADDED:
        return f"paused: {where}"
    if fate.fate == Fate.MOVED:
        return f"pause moved: region {fate.region} from rule {fate.rule} to {_rules(fate.to)}"
    if fate.fate == Fate.ENDED:
        return f"pause ended with its cell: {where}"
    if fate.fate == Fate.DROPPED:
        return f"pause dropped (it paused nothing): {where}"
    if fate.fate == Fate.LIFTED:
        if fate.to == (fate.rule,):
            return f"resumed: {where}"
        return (f"resumed: region {fate.region} under {_rules(fate.to)} (paused under rule "
                f"{fate.rule})")
    return ""


def _pause_words(fate: PauseFate, new: Mapping[str, Any]) -> str:
    """What a pause's fate does to the cases, for a confirmation ('' when nothing changes)."""
    rule, region = fate.rule, fate.region
    automated = new["stage"] in (*_AUTOMATED, Stage.FULL)
    if fate.fate == Fate.ADDED:
        return f"Region {region} under rule {rule} goes back to reviewers (paused)."
    if fate.fate == Fate.MOVED:
        to = ("the full stage (rule full)" if fate.to == (FULL_RULE,) else _rules(fate.to))
        return (f"Region {region} stays with reviewers: its guardrail pause moves from rule "
                f"{rule} to {to}.")
    if fate.fate == Fate.ENDED:
        if rule == FULL_RULE:
            why = f"no rule of the new scope takes cases from region {region}"
        elif any(r["name"] == rule for r in new["rules"]):
            why = f"rule {rule} no longer takes cases from region {region}"
        else:
            why = f"rule {rule} is removed and no new rule takes cases from region {region}"
        return f"The guardrail pause of region {region} under rule {rule} ends: {why}."
    if fate.fate == Fate.DROPPED:
        return (f"The pause of region {region} under rule {rule} is removed: that rule takes "
                f"no case from region {region}, so it paused nothing.")
    if fate.fate == Fate.LIFTED:
        if not automated:
            return f"The guardrail pause of region {region} under rule {rule} is lifted."
        if fate.to == (rule,):
            return f"The model decides again in region {region} under rule {rule}."
        return (f"The model decides again in region {region} under {_rules(fate.to)}: the "
                f"guardrail pause under rule {rule} is lifted.")
    return ""


def rule_brief(rule: Mapping[str, Any]) -> str:
    """A rule's conditions in a few words, e.g. 'north 08:00-18:00, 25%'."""
    parts = [_and_list(list(rule["regions"])) if rule.get("regions") else "every region"]
    if rule.get("regions_not"):
        parts.append(f"except {_and_list(list(rule['regions_not']))}")
    if rule.get("windows"):
        parts.append(" or ".join(f"{w['start']}-{w['end']}" for w in rule["windows"]))
    if rule.get("weekdays"):
        parts.append(_and_list([d.capitalize() for d in rule["weekdays"]]))
    dates = rule.get("dates") or {}
    if dates:
        parts.append(f"{dates.get('from', '…')} to {dates.get('until', '…')}")
    text = " ".join(parts)
    if rule.get("percent") is not None:
        text += f", {_pct(rule['percent'])}"
    return text


def change_in_words(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What a change from policy `old` to `new` does to the cases, in sentences: what the
    confirmation of a publish, pause, resume or rollback says."""
    lines: list[str] = []
    threshold = float(new["confidence_threshold"])
    old_rules = ({r["name"]: r for r in old["rules"]} if old["stage"] in _AUTOMATED else {})
    new_rules = ({r["name"]: r for r in new["rules"]} if new["stage"] in _AUTOMATED else {})
    if new["stage"] != old["stage"]:
        if new["stage"] == Stage.PAUSED:
            lines.append("Automation stops: every new case goes to reviewers.")
        elif new["stage"] == Stage.SHADOW:
            lines.append("The model stops deciding: every new case goes to reviewers, blind "
                         "to the model.")
        elif new["stage"] == Stage.FULL:
            lines.append(f"The model decides every case when its confidence is at least "
                         f"{threshold:.2f}.")
        elif old["stage"] == Stage.FULL:
            lines.append("The model no longer decides every case, only the rules below.")
    if old["stage"] == Stage.FULL and new["stage"] in _AUTOMATED and not new_rules:
        lines.append("Every case goes back to reviewers.")
    for name, rule in new_rules.items():
        prior = old_rules.get(name)
        if prior is None:
            lines.append(f"The model starts deciding "
                         f"{rule_describe(rule, policy_threshold=threshold)} (rule {name}).")
        elif prior != rule:
            lines.append(f"Rule {name} changes from {rule_brief(prior)} to "
                         f"{rule_describe(rule, policy_threshold=threshold)}.")
    if new["stage"] != Stage.FULL:
        lines.extend(f"{rule_brief(rule)} goes back to reviewers (rule {name})."
                     for name, rule in old_rules.items() if name not in new_rules)
    for key, label in (("confidence_threshold", "Confidence threshold"),
                       ("audit_rate", "Audit rate")):
        if float(old[key]) != float(new[key]):
            lines.append(f"{label} {float(old[key]):g} → {float(new[key]):g}.")
    lines.extend(line for fate in pause_fates(old, new)
                 if (line := _pause_words(fate, new)))
    if (old.get("guardrails") or {}) != (new.get("guardrails") or {}):
        lines.append(f"Guardrail settings {_fmt(old.get('guardrails') or {})} → "
                     f"{_fmt(new.get('guardrails') or {})}.")
    return lines or ["Nothing changes for the cases."]
