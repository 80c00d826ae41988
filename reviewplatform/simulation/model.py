"""The simulated model: an answer per case and model version that is right with the scenario's
accuracy for the case's region, local hour of capture and the drift events in force.

It stands in for the learners' forward pass only (`inference.services.predictions_make`'s
`predict`): the worker's path around it (claims, input statistics, out-of-domain checks, the
stored rows, routing) is the real one. Draws are stable per case and version.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from inference.models import ModelVersion
from inference.predictor import Output
from reviewplatform.models import Case

from .arrivals import is_day
from .scenario import Scenario


@dataclass(frozen=True)
class Known:
    """What the simulation knows of a case it submitted: its region and true label."""

    region: str
    truth: str


class SimulatedModel:
    def __init__(self, scenario: Scenario, *, start: datetime, seed: int,
                 truths: dict[int, Known]) -> None:
        self.scenario = scenario
        self.start = start
        self.seed = seed
        self.truths = truths
        self.timezones = {r.code: ZoneInfo(r.timezone) for r in scenario.regions}

    def accuracy(self, *, region: str, captured_at: datetime
                 ) -> tuple[float, tuple[float, float]]:
        """The chance of a right answer, and the confidence range of a wrong one."""
        spec = self.scenario.model
        day = (captured_at - self.start) / timedelta(days=1)
        for drift in self.scenario.drifts:
            if (drift.region == region and day >= drift.start_day
                    and (drift.end_day is None or day < drift.end_day)):
                return drift.accuracy, drift.confidence_wrong or spec.confidence_wrong
        table = spec.by_region.get(region, spec.accuracy)
        local = captured_at.astimezone(self.timezones[region])
        rate = table.day if is_day(local, self.scenario.day_hours) else table.night
        return rate, spec.confidence_wrong

    def answer(self, case: Case, version: ModelVersion) -> Output:
        known = self.truths.get(case.pk)
        labels = [str(label) for label in version.labels]
        rng = random.Random(f"{self.seed}:{case.external_id}:{version.name}")
        if known is None:  # not a case of this simulation: a guess
            label = rng.choice(labels)
            return _output(label, rng.uniform(0.3, 0.6), labels)
        rate, wrong_range = self.accuracy(region=known.region, captured_at=case.captured_at)
        if not version.is_champion:
            rate = min(1.0, max(0.0, rate + self.scenario.model.challenger_offset))
        if rng.random() < rate:
            low, high = self.scenario.model.confidence_right
            return _output(known.truth, rng.uniform(low, high), labels)
        label = rng.choice([lb for lb in labels if lb != known.truth] or labels)
        return _output(label, rng.uniform(*wrong_range), labels)

    def predict(self, version: ModelVersion, cases: Sequence[Case]) -> list[Output]:
        """`inference.services.Predict`: the answers of one version for a batch of cases."""
        return [self.answer(case, version) for case in cases]


def _output(label: str, confidence: float, labels: list[str]) -> Output:
    rest = (1.0 - confidence) / max(1, len(labels) - 1)
    probabilities = {lb: (confidence if lb == label else rest) for lb in labels}
    entropy = -sum(p * math.log(p) for p in probabilities.values() if p > 0)
    return Output(label=label, confidence=confidence, probabilities=probabilities,
                  entropy=entropy, latency_ms=0.0)
