"""Guardrails under drift and in health: the simulator's fast mode (rollout.simulation.fast).

Each scenario runs 1,000 simulated automated scope cells for 14 days: 2,000 automated cases a
day per cell, a 5% base audit rate, audits answered 10 minutes after the case, the guardrail
checked every minute with the platform's own code (rollout.sequential, with the default
guardrail settings of rollout.models). Drifts start on day 2, after the cell was published on
300 shadow-stage reviews; the healthy cells were published on 60. Beside each figure: the rule
shipped before (Wilson 95% lower bound over the last 14 days' reviews, shadow-stage reviews
included, at least 30, fixed 5% audits), in the same run on the same scenarios.

Writes bench/results/guardrails.json:
- wrong_before_pause_060, wrong_before_pause_080: median wrong automated decisions after a drift
  from 0.96 to 0.60 / 0.80 until the pause (targets <= 175 and <= 310);
- false_pause_rate_095, false_pause_rate_097: healthy cells paused within 14 days (<= 0.01);
- audit_ci_coverage: how often the report's audit-weighted 95% interval covers the true
  agreement of the automated decisions, over every simulated cell (>= 0.94);
- and the shipped rule's figures under `shipped_*`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import django
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import results_write
from rollout.simulation.fast import FastScenario, simulate, simulate_shipped

RUNS = 1000
BASE_RATE = 0.05
SCENARIOS = {
    "060": FastScenario("drift 0.96 -> 0.60", agreement=0.96, drift_to=0.60),
    "080": FastScenario("drift 0.96 -> 0.80", agreement=0.96, drift_to=0.80),
    "095": FastScenario("healthy at 0.95", agreement=0.95, published_on=60),
    "097": FastScenario("healthy at 0.97", agreement=0.97, published_on=60),
}
TARGETS = {"wrong_before_pause_060": ("<=", 175), "wrong_before_pause_080": ("<=", 310),
           "false_pause_rate_095": ("<=", 0.01), "false_pause_rate_097": ("<=", 0.01),
           "audit_ci_coverage": (">=", 0.94)}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewplatform.settings.test")
    os.environ.setdefault("SECRET_KEY", "bench")
    django.setup()  # for the guardrail defaults on the policy model; no database is used
    from rollout.models import GUARDRAIL_DEFAULTS
    from rollout.verdicts import agreement_test, audit_rates_for

    settings = dict(GUARDRAIL_DEFAULTS)
    test = agreement_test(settings)
    rates = audit_rates_for(settings, base=BASE_RATE)
    print(f"{RUNS} cells per scenario, 14 days, 2,000 automated cases a day, audits at "
          f"{rates.base:.0%} (thin evidence {rates.thin:.0%}, leaning {rates.high:.0%}), floor "
          f"{test.floor}, pause at evidence {test.pause_evidence:g}; model answers drawn from "
          "the scenario's agreement (no learner: the statistics alone)", flush=True)
    figures: dict[str, float] = {}
    covered = []
    for key, scenario in SCENARIOS.items():
        started = time.perf_counter()
        new = simulate(scenario, runs=RUNS, test=test, rates=rates, seed=int(key))
        old = simulate_shipped(scenario, runs=RUNS, floor=test.floor, seed=int(key))
        covered.append(new.covered)
        if scenario.drift_to is not None:
            name = f"wrong_before_pause_{key}"
            figures[name], figures[f"shipped_{name}"] = new.median_wrong, old.median_wrong
            figures[f"paused_share_{key}"] = new.paused_share
        else:
            name = f"false_pause_rate_{key}"
            figures[name], figures[f"shipped_{name}"] = new.paused_share, old.paused_share
        figures[f"median_audits_{key}"] = float(np.median(new.audits))
        print(f"{scenario.name}: {name} {figures[name]:g} (shipped rule "
              f"{figures['shipped_' + name]:g}); median audits {np.median(new.audits):.0f} "
              f"(shipped {np.median(old.audits):.0f}); {time.perf_counter() - started:.0f} s",
              flush=True)
    figures["audit_ci_coverage"] = round(float(np.concatenate(covered).mean()), 4)
    results_write("guardrails", figures)
    missed = []
    print(f"\n{'figure':<26} {'value':>9} {'shipped rule':>13}  target")
    for name, (sign, target) in TARGETS.items():
        value = figures[name]
        shipped = figures.get(f"shipped_{name}")
        met = value <= target if sign == "<=" else value >= target
        missed += [] if met else [name]
        shown = "" if shipped is None else f"{shipped:g}"
        print(f"{name:<26} {value:>9g} {shown:>13}  {sign} {target} {'met' if met else 'MISSED'}")
    if missed:
        print(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
