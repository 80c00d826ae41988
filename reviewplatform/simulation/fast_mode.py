"""`manage.py simulate SCENARIO --fast`: the scenario's automated cells through the guardrail's
statistics alone (rollout.simulation.fast), many times over, without the database.

Each region the scenario's first automated policy covers becomes one simulated cell, published
on that policy's day: its automated cases arrive at the region's daily rate (every case taken
as automated: the fast mode has no confidence or scope filter), right with the region's daytime
accuracy until a drift sets another, audited at the policy's rate (adaptive, as the policy's
guardrail settings say), answered 10 minutes later, checked every minute. Beside it the rule
shipped before, on the same cells.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rollout.models import GUARDRAIL_DEFAULTS, Stage
from rollout.simulation.fast import MINUTES_PER_DAY, FastScenario, simulate, simulate_shipped
from rollout.verdicts import agreement_test, audit_rates_for

from .scenario import PolicyChange, Scenario, ScenarioError

AUTOMATED = {Stage.LIMITED, Stage.EXPANDING, Stage.FULL}


@dataclass(frozen=True)
class FastCell:
    region: str
    scenario: FastScenario


def fast_cells(scenario: Scenario) -> tuple[PolicyChange, list[FastCell]]:
    """The cells of the scenario's first automated policy, as fast-mode scenarios."""
    policy = next((p for p in scenario.policy if p.stage in AUTOMATED), None)
    if policy is None:
        raise ScenarioError(f"{scenario.path}: no policy automates anything, so there is no "
                            "cell for the fast mode to watch")
    codes = [r.code for r in scenario.regions]
    covered: set[str] = set(codes) if policy.stage == Stage.FULL else set()
    for rule in policy.rules:
        covered |= set(rule.get("regions") or codes) - set(rule.get("regions_not") or ())
    cells = []
    for region in scenario.regions:
        if region.code not in covered:
            continue
        accuracy = scenario.model.by_region.get(region.code, scenario.model.accuracy).day
        drift = next((d for d in scenario.drifts if d.region == region.code
                      and d.start_day >= policy.day), None)
        cells.append(FastCell(region=region.code, scenario=FastScenario(
            name=region.code, agreement=accuracy,
            drift_to=drift.accuracy if drift else None,
            drift_day=(drift.start_day - policy.day) if drift else 0.0,
            published_on=0, days=scenario.days - policy.day,
            cases_per_day=region.cases_per_day, base_rate=policy.audit_rate)))
    return policy, cells


def fast_lines(scenario: Scenario, *, runs: int, seed: int) -> Iterator[str]:
    policy, cells = fast_cells(scenario)
    settings = {**GUARDRAIL_DEFAULTS, **(policy.guardrails or {})}
    test = agreement_test(settings)
    rates = audit_rates_for(settings, base=policy.audit_rate)
    yield (f"scenario: {scenario.name}, fast mode: the guardrail's statistics alone, {runs} runs "
           f"per cell, from the {policy.stage} policy of day {policy.day:g} to day "
           f"{scenario.days:g}; every case of a covered region taken as automated; answers "
           "drawn from the scenario's accuracy (no database, no learner)")
    yield (f"floor {test.floor}, pause at evidence {test.pause_evidence:g}; audits at "
           f"{rates.base:.0%} (thin {rates.thin:.0%}, leaning {rates.high:.0%})")
    for n, cell in enumerate(cells):
        new = simulate(cell.scenario, runs=runs, test=test, rates=rates, seed=seed + n)
        old = simulate_shipped(cell.scenario, runs=runs, floor=test.floor, seed=seed + n)
        what = (f"drift to {cell.scenario.drift_to} on day {cell.scenario.drift_day:g} after "
                "publishing" if cell.scenario.drift_to is not None
                else f"steady at {cell.scenario.agreement}")
        yield (f"  {cell.region} ({what}): paused in {new.paused_share:.1%} of runs"
               f"{_when(new.paused_minute)}, median wrong automated decisions "
               f"{new.median_wrong:g}, median audits {np.median(new.audits):.0f}; shipped rule: "
               f"paused in {old.paused_share:.1%}{_when(old.paused_minute)}, median wrong "
               f"{old.median_wrong:g}")


def _when(paused: np.ndarray) -> str:
    done = paused[paused >= 0]
    if not done.size:
        return ""
    return f" (median day {np.median(done) / MINUTES_PER_DAY:.2f})"
