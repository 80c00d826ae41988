"""Case arrivals: per region, a Poisson count per hour that follows the day in the region's own
time zone (busier by day than by night), each case a real digit image with its known label."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from .scenario import Scenario


@dataclass(frozen=True)
class Arrival:
    """One case to submit at `at` (captured a little earlier), with its truth."""

    at: datetime
    captured_at: datetime
    region: str
    image: Path
    truth: str


def is_day(local: datetime, day_hours: tuple[int, int]) -> bool:
    return day_hours[0] <= local.hour < day_hours[1]


def _poisson(rng: random.Random, mean: float) -> int:
    """Knuth's method; the means here are small (cases per region and hour)."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def arrivals_plan(scenario: Scenario, *, start: datetime, images: list[Path],
                  rng: random.Random) -> list[Arrival]:
    """Every arrival of the scenario, in time order. `images` lie in folders named by label."""
    if not images:
        raise ValueError("no digit images to submit")
    day_len = scenario.day_hours[1] - scenario.day_hours[0]
    weights = day_len + scenario.night_weight * (24 - day_len)
    end = start + timedelta(days=scenario.days)
    arrivals: list[Arrival] = []
    hour = start
    while hour < end:
        span = min(timedelta(hours=1), end - hour)
        for region in scenario.regions:
            local = hour.astimezone(ZoneInfo(region.timezone))
            weight = 1.0 if is_day(local, scenario.day_hours) else scenario.night_weight
            mean = region.cases_per_day * weight / weights * (span / timedelta(hours=1))
            for _ in range(_poisson(rng, mean)):
                at = hour + span * rng.random()
                image = rng.choice(images)
                arrivals.append(Arrival(
                    at=at, captured_at=at - timedelta(seconds=rng.uniform(5, 120)),
                    region=region.code, image=image, truth=image.parent.name))
        hour += span
    arrivals.sort(key=lambda a: a.at)
    return arrivals
