"""The rollout page's scope editor as plain form fields, read into a policy's values.

The editor posts structured fields, so that it works without JavaScript (`i` and `j` are
positions on the page; a removed rule or window leaves a gap):

    stage, confidence_threshold, audit_rate
    rule-i-name                      blank: a name is made from the conditions on validation
    rule-i-regions, rule-i-regions_not   repeated (checkboxes); none ticked: every region
    rule-i-window-j-start, -end      HH:MM local time; a row left blank is no window
    rule-i-weekdays                  repeated; none (or all seven) ticked: every day
    rule-i-date-from, rule-i-date-until   YYYY-MM-DD, either may be blank
    rule-i-percent                   0-100, blank: every case
    rule-i-confidence_threshold      blank: the policy's threshold
    rule-i-group                     kept as it came (the JSON view may set it)
    rule-i-remove                    ticked: the rule is left out

A rule slot with nothing filled in is left out (the page always offers an empty one).
The same rules also travel as JSON in `rules` (the "Advanced: JSON" view), with `rules_initial`,
the JSON as the page gave it: when the two differ, the admin edited the JSON, and it wins.

Reading never fails; what cannot be read is kept with its error beside the field, so the page
can show the form again as it was posted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .rules import WEEKDAYS

FormData = Mapping[str, Sequence[str]]
_RULE_FIELD = re.compile(r"^rule-(\d+)-")
_WINDOW_FIELD = re.compile(r"^rule-(\d+)-window-(\d+)-(start|end)$")
_SPEC_FIELD = re.compile(r"^rules\[(\d+)\](?:\.(\w+)(?:\[(\d+)\])?(?:\.(\w+))?)?$")


@dataclass
class WindowForm:
    index: int
    start: str = ""
    end: str = ""
    error: str = ""


@dataclass
class RuleForm:
    index: int
    name: str = ""
    regions: list[str] = field(default_factory=list)
    regions_not: list[str] = field(default_factory=list)
    windows: list[WindowForm] = field(default_factory=list)
    weekdays: list[str] = field(default_factory=list)
    date_from: str = ""
    date_until: str = ""
    percent: str = ""
    confidence_threshold: str = ""
    group: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    kept_windows: list[WindowForm] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return f"rule-{self.index}"

    @property
    def blank(self) -> bool:
        return not (self.name or self.regions or self.regions_not or self.weekdays
                    or self.date_from or self.date_until or self.percent
                    or self.confidence_threshold or self.group
                    or any(w.start or w.end for w in self.windows))


@dataclass
class ScopeForm:
    stage: str = ""
    confidence_threshold: str = ""
    audit_rate: str = ""
    rules: list[RuleForm] = field(default_factory=list)
    rules_json: str = ""
    rules_initial: str = ""
    errors: dict[str, str] = field(default_factory=dict)  # form field -> message
    values: dict[str, Any] | None = None  # stage, rules, thresholds: once read without error
    kept: list[RuleForm] = field(default_factory=list)  # the rules in `values`, in order

    @property
    def json_edited(self) -> bool:
        return self.rules_json.strip() != self.rules_initial.strip()

    @property
    def json_error(self) -> str:
        return next((f"{key}: {message}" for key, message in self.errors.items()
                     if key.startswith("rules")), "")

    def error_add(self, spec_field: str, message: str) -> str:
        """Put a validation error of the policy's values (`rules[0].percent`...) beside the
        form field it came from; return that field's name."""
        match = _SPEC_FIELD.match(spec_field)
        if self.json_edited or match is None or int(match.group(1)) >= len(self.kept):
            self.errors[spec_field] = message
            return spec_field
        rule = self.kept[int(match.group(1))]
        key, window, sub = match.group(2), match.group(3), match.group(4)
        if key == "windows" and window is not None and int(window) < len(rule.kept_windows):
            slot = rule.kept_windows[int(window)]
            slot.error = message
            name = f"{rule.prefix}-window-{slot.index}"
        elif key == "dates":
            rule.errors["dates"] = message
            name = f"{rule.prefix}-date-{sub or 'from'}"
        else:
            rule.errors[key or "rule"] = message
            name = f"{rule.prefix}-{key}" if key else rule.prefix
        self.errors[name] = message
        return name


def _one(data: FormData, key: str) -> str:
    values = data.get(key) or [""]
    return str(values[-1]).strip()


def _many(data: FormData, key: str) -> list[str]:
    return [str(v).strip() for v in data.get(key) or () if str(v).strip()]


def _number(text: str) -> float | int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value) if value.is_integer() else value


def _clock(text: str) -> str:
    """An `<input type="time">` value, HH:MM or HH:MM:SS with no seconds, as HH:MM."""
    return text[:5] if re.fullmatch(r"\d\d:\d\d:00(\.0+)?", text) else text


def _rule_read(data: FormData, index: int) -> RuleForm:
    prefix = f"rule-{index}"
    windows: dict[int, WindowForm] = {}
    for key in data:
        match = _WINDOW_FIELD.match(key)
        if match and int(match.group(1)) == index:
            j = int(match.group(2))
            slot = windows.setdefault(j, WindowForm(index=j))
            setattr(slot, match.group(3), _clock(_one(data, key)))
    return RuleForm(
        index=index, name=_one(data, f"{prefix}-name"),
        regions=_many(data, f"{prefix}-regions"),
        regions_not=_many(data, f"{prefix}-regions_not"),
        windows=[windows[j] for j in sorted(windows)],
        weekdays=_many(data, f"{prefix}-weekdays"),
        date_from=_one(data, f"{prefix}-date-from"), date_until=_one(data, f"{prefix}-date-until"),
        percent=_one(data, f"{prefix}-percent"),
        confidence_threshold=_one(data, f"{prefix}-confidence_threshold"),
        group=_one(data, f"{prefix}-group"))


def _rule_values(rule: RuleForm) -> dict[str, Any]:
    """A rule's values for validation; unreadable fields leave their error on `rule`."""
    out: dict[str, Any] = {}
    if rule.name:
        out["name"] = rule.name
    if rule.regions:
        out["regions"] = rule.regions
    if rule.regions_not:
        out["regions_not"] = rule.regions_not
    rule.kept_windows = []
    for window in rule.windows:
        if not window.start and not window.end:
            continue
        if not window.start or not window.end:
            window.error = "a window needs both a start and an end"
            rule.errors[f"window-{window.index}"] = window.error
            continue
        rule.kept_windows.append(window)
    if rule.kept_windows:
        out["windows"] = [{"start": w.start, "end": w.end} for w in rule.kept_windows]
    if rule.weekdays and set(rule.weekdays) != set(WEEKDAYS):
        out["weekdays"] = rule.weekdays
    dates = {k: v for k, v in (("from", rule.date_from), ("until", rule.date_until)) if v}
    if dates:
        out["dates"] = dates
    for key, text, what in (("percent", rule.percent, "a number from 0 to 100"),
                            ("confidence_threshold", rule.confidence_threshold,
                             "a number from 0 to 1, or blank for the policy's")):
        if text:
            number = _number(text)
            if number is None:
                rule.errors[key] = f"{key.replace('_', ' ')} must be {what}"
            else:
                out[key] = number
    if rule.group:
        out["group"] = rule.group
    return out


def scope_form_parse(data: FormData) -> ScopeForm:
    """Read the editor's fields; `values` is set when every field could be read, otherwise
    `errors` names each field at fault (form field name -> message).

    The values still go through `policy_spec_validate`, which puts names on unnamed rules and
    checks regions, times and ranges; `ScopeForm.error_add` puts its error beside the field.
    """
    form = ScopeForm(stage=_one(data, "stage"),
                     confidence_threshold=_one(data, "confidence_threshold"),
                     audit_rate=_one(data, "audit_rate"),
                     rules_json=(data.get("rules") or [""])[-1],
                     rules_initial=(data.get("rules_initial") or [""])[-1])
    indices = sorted({int(m.group(1)) for key in data if (m := _RULE_FIELD.match(key))})
    form.rules = [_rule_read(data, i) for i in indices]
    values: dict[str, Any] = {"stage": form.stage}
    for key in ("confidence_threshold", "audit_rate"):
        number = _number(getattr(form, key))
        if number is None:
            form.errors[key] = f"{key.replace('_', ' ')} must be a number from 0 to 1"
        else:
            values[key] = float(number)
    if form.json_edited:
        try:
            values["rules"] = json.loads(form.rules_json or "[]")
        except json.JSONDecodeError as exc:
            form.errors["rules"] = f"rules are not valid JSON: {exc}"
    else:
        rules = []
        for rule in form.rules:
            if _one(data, f"{rule.prefix}-remove") or rule.blank:
                continue
            rules.append(_rule_values(rule))
            form.kept.append(rule)
            form.errors.update({f"{rule.prefix}-{k}": v for k, v in rule.errors.items()})
        values["rules"] = rules
        if not form.errors:
            form.rules_json = form.rules_initial = json.dumps(rules, indent=2)
    if not form.errors:
        form.values = values
    return form


def _text(value: Any) -> str:
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def scope_form_from_spec(spec: Mapping[str, Any]) -> ScopeForm:
    """The editor filled in with a policy (see `PolicyVersion.spec`)."""
    rules = []
    for i, rule in enumerate(spec["rules"]):
        dates = rule.get("dates") or {}
        rules.append(RuleForm(
            index=i, name=rule.get("name", ""), regions=list(rule.get("regions") or ()),
            regions_not=list(rule.get("regions_not") or ()),
            windows=[WindowForm(index=j, start=w["start"], end=w["end"])
                     for j, w in enumerate(rule.get("windows") or ())],
            weekdays=list(rule.get("weekdays") or ()),
            date_from=dates.get("from", ""), date_until=dates.get("until", ""),
            percent=_text(rule.get("percent")),
            confidence_threshold=_text(rule.get("confidence_threshold")),
            group=rule.get("group", "")))
    text = json.dumps(list(spec["rules"]), indent=2)
    return ScopeForm(stage=spec["stage"],
                     confidence_threshold=_text(float(spec["confidence_threshold"])),
                     audit_rate=_text(float(spec["audit_rate"])), rules=rules,
                     rules_json=text, rules_initial=text)


def scope_form_spares_add(form: ScopeForm) -> ScopeForm:
    """Add the empty rule and the empty window row per rule that the page offers, so that
    rules and windows can be added without JavaScript."""
    for rule in form.rules:
        rule.windows.append(WindowForm(index=max((w.index for w in rule.windows), default=-1)
                                       + 1))
    spare = RuleForm(index=max((r.index for r in form.rules), default=-1) + 1,
                     windows=[WindowForm(index=0)])
    form.rules.append(spare)
    return form
