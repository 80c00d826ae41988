"""The simulator's fast mode: the guardrail statistics alone, for many simulated cells at once.

No database and no model: each simulated cell is an automated scope cell (one rule in one
region) published at minute 0, whose automated cases arrive as a Poisson stream; each is right
with the scenario's agreement, which may drift at a set time. A share of them (the audit rate,
adaptive or fixed) is audited, and the answer arrives a set number of minutes later. Every
simulated minute the guardrail checks the cell, as beat does, with the same code the platform
runs (`rollout.sequential`), and a failing cell is paused from the next minute.

Beside it runs the rule the platform shipped before: agreement over the reviews of the last 14
days, shadow-stage reviews included, paused when its Wilson 95% lower bound falls below the
floor with at least 30 reviews, at the fixed base audit rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from rollout.reports.stats import inverse_rate_weighted
from rollout.sequential import AuditRates, SequentialTest

MINUTES_PER_DAY = 1440
SHADOW_DAYS = 7  # the shipped rule's shadow-stage reviews are spread over the week before
SHIPPED_WINDOW_DAYS = 14
SHIPPED_MIN_SAMPLE = 30


@dataclass(frozen=True)
class FastScenario:
    """One cell's story. `agreement` holds until `drift_day`, then `drift_to` (None: no drift).
    `published_on`: the shadow-stage reviews at `agreement` before publishing (only the shipped
    rule counts them). `answer_minutes`: how long an audit waits for its answer."""

    name: str
    agreement: float
    drift_to: float | None = None
    drift_day: float = 2.0
    published_on: int = 300
    days: float = 14.0
    cases_per_day: float = 2000.0
    base_rate: float = 0.05
    answer_minutes: int = 10


@dataclass
class FastResult:
    """Per simulated cell: `wrong` automated decisions after the drift (all of them for a
    healthy cell) until the pause or the end; `paused_minute` (-1: never paused); and for the
    audit estimate, the true agreement of the automated decisions and the report's interval."""

    scenario: str
    rule: str
    wrong: NDArray[np.int64]
    paused_minute: NDArray[np.int64]
    audits: NDArray[np.int64]
    covered: NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def paused_share(self) -> float:
        return float(np.mean(self.paused_minute >= 0))

    @property
    def median_wrong(self) -> float:
        return float(np.median(self.wrong))


def _wilson_low(k: NDArray[np.float64], n: NDArray[np.float64]) -> NDArray[np.float64]:
    z = 1.959963984540054
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = p + z * z / (2 * n)
        spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return np.asarray((centre - spread) / (1 + z * z / n))


def simulate(scenario: FastScenario, *, runs: int, test: SequentialTest, rates: AuditRates,
             seed: int = 0) -> FastResult:
    """The sequential guardrail with (possibly adaptive) audit rates, on `runs` cells."""
    rng = np.random.default_rng(seed)
    minutes = int(scenario.days * MINUTES_PER_DAY)
    drift_at = _drift_minute(scenario, minutes)
    lam = scenario.cases_per_day / MINUTES_PER_DAY
    ladder = np.unique([rates.base, rates.thin, rates.high])
    detector = test.detector_new((runs,))
    n = np.zeros(runs)
    agreed = np.zeros(runs)
    paused = np.full(runs, -1, dtype=np.int64)
    wrong = np.zeros(runs, dtype=np.int64)
    right_total = np.zeros(runs)
    decided_total = np.zeros(runs)
    by_rate = np.zeros((runs, len(ladder), 2))  # audits, agreed per rate of the ladder
    pending = np.zeros((scenario.answer_minutes + 1, 2, runs), dtype=np.int64)
    cells = np.arange(runs)
    for minute in range(minutes):
        live = paused < 0
        p = scenario.agreement if minute < drift_at else float(scenario.drift_to or 0.0)
        rate = rates.rate(test, detector=detector,
                          pass_log=test.pass_log_evidence(n, agreed))
        mean = lam * live
        right_a = rng.poisson(mean * rate * p)
        wrong_a = rng.poisson(mean * rate * (1 - p))
        right_u = rng.poisson(mean * (1 - rate) * p)
        wrong_u = rng.poisson(mean * (1 - rate) * (1 - p))
        if minute >= drift_at or scenario.drift_to is None:
            wrong += wrong_a + wrong_u
        right_total += right_a + right_u
        decided_total += right_a + wrong_a + right_u + wrong_u
        slot = np.searchsorted(ladder, rate)
        by_rate[cells, slot, 0] += right_a + wrong_a  # one slot per cell: no repeated index
        by_rate[cells, slot, 1] += right_a
        pending[(minute + scenario.answer_minutes) % len(pending)] += np.stack([right_a, wrong_a])
        due = pending[minute % len(pending)]
        detector, n, agreed = _answers_apply(rng, test, detector, n, agreed, due[0], due[1])
        due[:] = 0
        failing = (test.fail_log_evidence(detector) >= test.log_pause) & (paused < 0)
        paused[failing] = minute + 1  # beat's next check has published the pause
    covered = _coverage(by_rate, ladder, right_total, decided_total)
    return FastResult(scenario=scenario.name, rule="sequential", wrong=wrong,
                      paused_minute=paused, audits=by_rate[:, :, 0].sum(axis=1).astype(np.int64),
                      covered=covered)


def simulate_shipped(scenario: FastScenario, *, runs: int, floor: float, seed: int = 0
                     ) -> FastResult:
    """The rule shipped before, at the fixed base audit rate."""
    rng = np.random.default_rng(seed)
    minutes = int(scenario.days * MINUTES_PER_DAY)
    drift_at = _drift_minute(scenario, minutes)
    lam = scenario.cases_per_day / MINUTES_PER_DAY
    shadow_n = float(scenario.published_on)
    shadow_k = rng.binomial(scenario.published_on, scenario.agreement, size=runs).astype(float)
    n = np.zeros(runs)
    agreed = np.zeros(runs)
    paused = np.full(runs, -1, dtype=np.int64)
    wrong = np.zeros(runs, dtype=np.int64)
    audits = np.zeros(runs, dtype=np.int64)
    pending = np.zeros((scenario.answer_minutes + 1, 2, runs), dtype=np.int64)
    rate = scenario.base_rate
    for minute in range(minutes):
        live = paused < 0
        p = scenario.agreement if minute < drift_at else float(scenario.drift_to or 0.0)
        mean = lam * live
        right_a = rng.poisson(mean * rate * p)
        wrong_a = rng.poisson(mean * rate * (1 - p))
        wrong_u = rng.poisson(mean * (1 - rate) * (1 - p))
        if minute >= drift_at or scenario.drift_to is None:
            wrong += wrong_a + wrong_u
        audits += right_a + wrong_a
        pending[(minute + scenario.answer_minutes) % len(pending)] += np.stack([right_a, wrong_a])
        due = pending[minute % len(pending)]
        agreed += due[0]
        n += due[0] + due[1]
        due[:] = 0
        # shadow reviews leave the 14-day window as the days pass
        kept = min(1.0, max(0.0, (SHIPPED_WINDOW_DAYS * MINUTES_PER_DAY - minute)
                            / (SHADOW_DAYS * MINUTES_PER_DAY)))
        total_n = n + math.floor(shadow_n * kept)
        total_k = agreed + np.floor(shadow_k * kept)
        failing = ((total_n >= SHIPPED_MIN_SAMPLE) & (_wilson_low(total_k, total_n) < floor)
                   & (paused < 0))
        paused[failing] = minute + 1
    return FastResult(scenario=scenario.name, rule="shipped", wrong=wrong,
                      paused_minute=paused, audits=audits)


def _drift_minute(scenario: FastScenario, minutes: int) -> int:
    if scenario.drift_to is None:
        return minutes
    return int(scenario.drift_day * MINUTES_PER_DAY)


def _answers_apply(rng: np.random.Generator, test: SequentialTest, detector: NDArray[np.float64],
                   n: NDArray[np.float64], agreed: NDArray[np.float64],
                   right: NDArray[np.int64], wrong: NDArray[np.int64]
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Feed each cell's answers of one minute to its detector, one at a time, in random order."""
    right, wrong = right.copy(), wrong.copy()
    for _ in range(int((right + wrong).max(initial=0))):
        left = right + wrong
        active = left > 0
        agree = rng.random(len(left)) * np.maximum(left, 1) < right
        detector = test.detector_update(detector, agree, active)
        right -= agree & active
        wrong -= ~agree & active
        n = n + active
        agreed = agreed + (agree & active)
    return detector, n, agreed


def _coverage(by_rate: NDArray[np.float64], ladder: NDArray[np.float64],
              right_total: NDArray[np.float64], decided_total: NDArray[np.float64]
              ) -> NDArray[np.bool_]:
    """Per cell: does the report's audit-weighted 95% interval cover the true agreement of
    all its automated decisions? Cells without audits are left out."""
    covered = []
    for groups, right, decided in zip(by_rate, right_total, decided_total, strict=True):
        estimate = inverse_rate_weighted(
            [(float(r), int(a), int(k)) for r, (a, k) in zip(ladder, groups, strict=True)])
        if estimate.low is None or estimate.high is None or not decided:
            continue
        covered.append(estimate.low <= right / decided <= estimate.high)
    return np.asarray(covered, dtype=bool)
