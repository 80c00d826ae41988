"""Scope evaluation plus routing, in process: the pure function the worker runs per case.

baseline: a trivial loop over the same inputs (building the same case facts, one comparison);
platform: `routing.route` for each case under a realistic policy (three rules with regions,
local time windows across midnight, weekdays, a sticky percentage, per-rule thresholds, a
paused cell and a 5% audit draw). Both in one run on the same inputs.
Writes bench/results/rollout.json: baseline_cases_per_s, route_cases_per_s, ratio.
"""

from __future__ import annotations

import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import results_write
from rollout.routing import ChampionAnswer, Policy, case_facts, route

N = 200_000
ZONES = {"north": "Europe/Oslo", "east": "Asia/Tokyo", "west": "America/Los_Angeles",
         "south": "Australia/Sydney"}
POLICY = Policy(
    stage="expanding", group_id="digits", audit_rate=0.05, confidence_threshold=0.9,
    paused_cells=[("night", "west")],
    rules=[
        {"name": "north-day", "regions": ["north", "east"],
         "windows": [{"start": "08:00", "end": "18:00"}],
         "weekdays": ["mon", "tue", "wed", "thu", "fri"], "percent": 25},
        {"name": "night", "regions_not": ["south"],
         "windows": [{"start": "22:00", "end": "06:00"}], "confidence_threshold": 0.97,
         "percent": 10},
        {"name": "south", "regions": ["south"], "dates": {"from": "2026-01-01"}, "percent": 50},
    ])


def inputs() -> list[tuple[str, datetime, str, ChampionAnswer]]:
    rng = random.Random(7)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    regions = list(ZONES)
    out = []
    for i in range(N):
        region = regions[i % len(regions)]
        captured = start + timedelta(seconds=rng.randrange(90 * 86400))
        answer = ChampionAnswer(label=str(i % 10), confidence=rng.random(),
                                out_of_domain=rng.random() < 0.03)
        out.append((region, captured, str(i + 1), answer))
    return out


def main() -> None:
    cases = inputs()
    started = time.perf_counter()
    trivial = 0
    for region, captured, key, answer in cases:
        facts = case_facts(region=region, captured_at=captured, timezone=ZONES[region],
                           case_key=key)
        trivial += (answer.confidence or 0) >= 0.9 and facts.region != "south"
    baseline = N / (time.perf_counter() - started)

    started = time.perf_counter()
    decided = 0
    for region, captured, key, answer in cases:
        facts = case_facts(region=region, captured_at=captured, timezone=ZONES[region],
                           case_key=key)
        decided += route(facts, answer, POLICY).model_decides
    routed = N / (time.perf_counter() - started)
    results_write("rollout", {
        "cases": N,
        "model_decided": decided,
        "baseline_cases_per_s": round(baseline),
        "route_cases_per_s": round(routed),
        "ratio_route_vs_baseline": round(routed / baseline, 3),
        "targets": "route_cases_per_s >= 100000",
    })
    if routed < 100_000:
        raise SystemExit(f"routing ran at {routed:.0f} cases/s, below 100,000")


if __name__ == "__main__":
    main()
