"""Scenario files: what a simulation runs, read from TOML and checked before anything is written.

A scenario names its deployment and regions, how many cases arrive per region and day (more by
day than by night, in each region's own time zone), how often the model is right (by region,
day or night, and during drift events), the pool of simulated reviewers, and the policy changes
to publish on the way. `scenarios/*.toml` at the repository root are examples; every key is
described there. A wrong file raises `ScenarioError` naming the file and the key at fault.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rollout.models import GUARDRAIL_DEFAULTS
from rollout.scope import ScopeError, rules_validate
from rollout.stages import Stage

from .reading import Reader, ScenarioError, hours, timezone_name


@dataclass(frozen=True)
class RegionSpec:
    code: str
    name: str
    timezone: str
    cases_per_day: float


@dataclass(frozen=True)
class Accuracy:
    day: float
    night: float


@dataclass(frozen=True)
class Drift:
    region: str
    start_day: float
    end_day: float | None
    accuracy: float
    confidence_wrong: tuple[float, float] | None


@dataclass(frozen=True)
class ModelSpec:
    accuracy: Accuracy
    by_region: dict[str, Accuracy]
    confidence_right: tuple[float, float]
    confidence_wrong: tuple[float, float]
    challenger_offset: float


@dataclass(frozen=True)
class ReviewerPool:
    name: str
    count: int
    accuracy: float
    seconds: tuple[float, float]
    hours: tuple[int, int]
    timezone: str
    senior: bool
    start_day: float
    end_day: float | None


@dataclass(frozen=True)
class PolicyChange:
    day: float
    stage: str
    reason: str
    rules: list[dict[str, Any]]
    confidence_threshold: float
    audit_rate: float
    override_reason: str
    guardrails: dict[str, float] | None


@dataclass(frozen=True)
class Scenario:
    name: str
    path: Path
    days: float
    start: datetime | None  # None: `days` before the moment the simulation starts
    day_hours: tuple[int, int]
    night_weight: float
    deployment_slug: str
    deployment_name: str
    regions: list[RegionSpec]
    model: ModelSpec
    reviewers: list[ReviewerPool]
    policy: list[PolicyChange]
    drifts: list[Drift]
    worker_seconds: int = 60
    guardrail_minutes: int = 15
    labels: list[str] = field(default_factory=lambda: [str(d) for d in range(10)])


def _guardrails(path: Path, table: Any, where: str) -> dict[str, float] | None:
    """A policy's guardrail settings (the rest keep their defaults); None: keep the current."""
    if table is None:
        return None
    reader = Reader(path, table, where)
    reader.check_keys(set(GUARDRAIL_DEFAULTS))
    return {key: reader.number(key) for key in reader.table}


_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")


def scenario_parse(path: Path, data: dict[str, Any]) -> Scenario:
    top = Reader(path, data, "")
    top.check_keys({"scenario", "deployment", "regions", "model", "drift", "reviewers",
                    "policy"})
    head = Reader(path, top.get("scenario"), "scenario")
    head.check_keys({"name", "days", "start", "day_hours", "night_weight", "worker_seconds",
                     "guardrail_minutes"})
    days = head.number("days", low=0.01, high=60)
    start = None
    if "start" in head.table:
        raw = head.get("start")
        if not isinstance(raw, datetime) or raw.tzinfo is None:
            raise head.fail("start", "must be a date-time with its UTC offset, e.g. "
                                     "2026-05-01T00:00:00Z (leave it out to end now)")
        start = raw

    dep = Reader(path, top.get("deployment"), "deployment")
    dep.check_keys({"slug", "name"})
    slug = dep.text("slug")
    if not _SLUG.match(slug):
        raise dep.fail("slug", f"must be lower-case letters, digits and dashes, got {slug!r}")

    regions: list[RegionSpec] = []
    for r in top.tables("regions"):
        r.check_keys({"code", "name", "timezone", "cases_per_day"})
        code = r.text("code")
        regions.append(RegionSpec(code=code, name=r.text("name", code.title()),
                                  timezone=timezone_name(r, "timezone"),
                                  cases_per_day=r.number("cases_per_day", high=100_000)))
    if not regions:
        raise top.fail("regions", "at least one [[regions]] table is needed")
    codes = [r.code for r in regions]
    if len(set(codes)) != len(codes):
        raise top.fail("regions", f"region codes repeat: {codes}")

    model = Reader(path, top.get("model"), "model")
    model.check_keys({"accuracy", "night_accuracy", "regions", "confidence_right",
                      "confidence_wrong", "challenger_offset"})
    base = Accuracy(day=model.number("accuracy", high=1),
                    night=model.number("night_accuracy", model.get("accuracy", 0), high=1))
    by_region: dict[str, Accuracy] = {}
    overrides = Reader(path, model.get("regions", {}), "model.regions")
    for code in overrides.table:
        if code not in codes:
            raise overrides.fail(code, f"unknown region (known: {', '.join(codes)})")
        o = Reader(path, overrides.table[code], f"model.regions.{code}")
        o.check_keys({"accuracy", "night_accuracy"})
        day = o.number("accuracy", base.day, high=1)
        by_region[code] = Accuracy(day=day, night=o.number("night_accuracy", day, high=1))
    model_spec = ModelSpec(
        accuracy=base, by_region=by_region,
        confidence_right=model.pair("confidence_right", [0.9, 0.999], high=1),
        confidence_wrong=model.pair("confidence_wrong", [0.5, 0.95], high=1),
        challenger_offset=model.number("challenger_offset", -0.03, low=-1, high=1))

    drifts: list[Drift] = []
    for d in top.tables("drift"):
        d.check_keys({"region", "start_day", "end_day", "accuracy", "confidence_wrong"})
        region = d.text("region")
        if region not in codes:
            raise d.fail("region", f"unknown region {region!r} (known: {', '.join(codes)})")
        start_day = d.number("start_day", high=days)
        end_day = d.number("end_day", high=days) if "end_day" in d.table else None
        if end_day is not None and end_day <= start_day:
            raise d.fail("end_day", "must come after start_day")
        drifts.append(Drift(region=region, start_day=start_day, end_day=end_day,
                            accuracy=d.number("accuracy", high=1),
                            confidence_wrong=(d.pair("confidence_wrong", high=1)
                                              if "confidence_wrong" in d.table else None)))

    pools: list[ReviewerPool] = []
    for p in top.tables("reviewers"):
        p.check_keys({"name", "count", "accuracy", "seconds", "hours", "timezone", "senior",
                      "start_day", "end_day"})
        count = p.number("count", low=1, high=100)
        if count != int(count):
            raise p.fail("count", "must be a whole number")
        senior = p.get("senior", False)
        if not isinstance(senior, bool):
            raise p.fail("senior", "must be true or false")
        seconds = p.pair("seconds", [8, 30], low=1, high=240)
        start_day = p.number("start_day", 0, high=days)
        end_day = p.number("end_day", high=days) if "end_day" in p.table else None
        pools.append(ReviewerPool(
            name=p.text("name", f"pool {len(pools) + 1}"), count=int(count),
            accuracy=p.number("accuracy", high=1), seconds=seconds,
            hours=hours(p, "hours", [0, 24]), timezone=timezone_name(p, "timezone", "UTC"),
            senior=senior, start_day=start_day, end_day=end_day))

    changes: list[PolicyChange] = []
    for c in top.tables("policy"):
        c.check_keys({"day", "stage", "reason", "rules", "confidence_threshold", "audit_rate",
                      "override_reason", "guardrails"})
        stage = c.text("stage")
        if stage not in Stage.values:
            raise c.fail("stage", f"unknown stage {stage!r} (known: {', '.join(Stage.values)})")
        try:
            rules = rules_validate(c.get("rules", []), region_codes=codes)
        except ScopeError as exc:
            raise c.fail(exc.field, exc.message) from exc
        changes.append(PolicyChange(
            day=c.number("day", high=days), stage=stage, reason=c.text("reason"), rules=rules,
            confidence_threshold=c.number("confidence_threshold", 0.9, high=1),
            audit_rate=c.number("audit_rate", 0.05, high=1),
            override_reason=str(c.get("override_reason", "")),
            guardrails=_guardrails(path, c.get("guardrails", None), f"{c.where}.guardrails")))
    if [c.day for c in changes] != sorted(c.day for c in changes):
        raise top.fail("policy", "changes must be listed in the order of their day")

    return Scenario(
        name=head.text("name"), path=path, days=days, start=start,
        day_hours=hours(head, "day_hours", [7, 19]),
        night_weight=head.number("night_weight", 0.25, high=10),
        deployment_slug=slug, deployment_name=dep.text("name", slug),
        regions=regions, model=model_spec, reviewers=pools, policy=changes, drifts=drifts,
        worker_seconds=int(head.number("worker_seconds", 60, low=1, high=3600)),
        guardrail_minutes=int(head.number("guardrail_minutes", 15, low=1, high=24 * 60)))


def scenario_load(path: Path) -> Scenario:
    """Read and check a scenario file; ScenarioError says what is wrong and where."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ScenarioError(f"{path}: no such scenario file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML ({exc})") from exc
    return scenario_parse(path, data)


def scenario_start(scenario: Scenario, *, now: datetime) -> datetime:
    """When the simulation begins: the scenario's `start`, else `days` before `now` (to the
    minute), so that it ends at `now`."""
    if scenario.start is not None:
        return scenario.start
    return (now - timedelta(days=scenario.days)).replace(second=0, microsecond=0)
