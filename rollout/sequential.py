"""Sequential tests of agreement that stay valid however often they are looked at.

Plain numpy on plain values: the guardrail (`rollout.guardrails`), the evidence gate
(`rollout.evidence`), the adaptive audit rate and the benchmark's simulator (`bench/guardrails.py`)
all call these functions, on one cell or on a thousand simulated cells at once (any array shape).

Each observation is one human answer to a case the model decided: agreed (1) or not (0).

**Failing: an e-detector (Shin, Ramdas & Rinaldo, "E-detectors: a nonparametric framework for
sequential change detection", 2023).** The null hypothesis is "agreement is at or above the
floor f". For an alternative q < f the likelihood ratio of one answer,
``q/f`` if agreed and ``(1-q)/(1-f)`` if not, has expectation at most 1 whenever the agreement p
is at least f, so its running product from any starting answer is a nonnegative supermartingale.
The detector keeps, per alternative, the largest such product over all starting points (Page's
CUSUM, in logs: ``max(0, C + log LR)``), and pauses when their average over a few alternatives
reaches ``pause_evidence`` (A). Because it restarts at every answer, evidence gathered while the
cell was healthy never outvotes a later drift. Guarantee under continuous monitoring: while the
agreement stays at or above the floor, the expected number of answers before a pause is at least
A (the CUSUM is bounded by the Shiryaev-Roberts statistic, whose excess over n is a
supermartingale); far above the floor a pause is much rarer still (see docs/guardrails.md).

**Passing: a mixture likelihood-ratio test** of "agreement is at or below the floor" over every
answer since the scope was published. By Ville's inequality, a cell whose agreement is at or
below the floor reaches ``proof_evidence`` (1/alpha) with probability at most alpha, however
long and however often it is watched. The evidence gate for a widening asks the same proof.

Fewer answers are never a failure: an empty record has evidence 1 either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class SequentialTest:
    """The settings of one check. `floor`: the agreement (or in-domain share) it protects.
    `fail_drops`/`pass_gains`: the alternatives below and above the floor that the mixtures
    average over, equally weighted."""

    floor: float
    pause_evidence: float = 1000.0
    proof_evidence: float = 40.0
    fail_drops: tuple[float, ...] = (0.05, 0.25)
    pass_gains: tuple[float, ...] = (0.03, 0.07, 0.12)
    lean_margin: float = 0.10
    _fail: tuple[FloatArray, FloatArray] = field(init=False, repr=False, compare=False)
    _pass: tuple[FloatArray, FloatArray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.floor < 1.0:
            raise ValueError(f"the floor must lie strictly between 0 and 1, not {self.floor}")
        if self.pause_evidence <= 1 or self.proof_evidence <= 1:
            raise ValueError("pause and proof evidence thresholds must exceed 1")
        f = self.floor
        lows = np.unique(np.clip([f - d for d in self.fail_drops], 1e-3, f - 1e-6))
        highs = np.unique(np.clip([f + d for d in self.pass_gains], f + 1e-6, 1 - 1e-3))
        # the last column is the lean detector: the floor against floor + lean_margin
        healthy = min(f + self.lean_margin, 1 - 1e-3)
        agree, disagree = _log_ratios(lows, f)
        object.__setattr__(self, "_fail", (
            np.append(agree, math.log(f / healthy)),
            np.append(disagree, math.log((1 - f) / (1 - healthy)))))
        object.__setattr__(self, "_pass", _log_ratios(highs, f))

    @property
    def log_pause(self) -> float:
        return math.log(self.pause_evidence)

    @property
    def log_proof(self) -> float:
        return math.log(self.proof_evidence)

    # -- failing: the e-detector ---------------------------------------------------------------

    def detector_new(self, shape: tuple[int, ...] = ()) -> FloatArray:
        """The detector of a cell with no answers yet: a log-CUSUM per alternative."""
        return np.zeros((*shape, len(self._fail[0])))

    def detector_update(self, detector: FloatArray, agreed: ArrayLike,
                        active: ArrayLike | None = None) -> FloatArray:
        """The detector after one more answer per cell (`active` False: no answer there)."""
        agree, disagree = self._fail
        step = np.where(np.asarray(agreed, dtype=bool)[..., None], agree, disagree)
        updated = np.maximum(0.0, detector + step)
        if active is None:
            return updated
        return np.where(np.asarray(active, dtype=bool)[..., None], updated, detector)

    def detector_fold(self, answers: ArrayLike) -> FloatArray:
        """The detector after a cell's answers in order: the same recursion as
        `detector_update`, as one pass (CUSUM = walk minus its running minimum)."""
        agreed = np.asarray(answers, dtype=bool)
        if agreed.size == 0:
            return self.detector_new()
        agree, disagree = self._fail
        walk = np.cumsum(np.where(agreed[:, None], agree, disagree), axis=0)
        lowest = np.minimum(np.minimum.accumulate(walk, axis=0), 0.0)
        return np.asarray(walk[-1] - lowest[-1])

    def fail_log_evidence(self, detector: FloatArray) -> FloatArray:
        """log of the average detector over the alternatives (0 with no answers)."""
        k = detector.shape[-1] - 1
        return np.asarray(_logsumexp(detector[..., :-1], axis=-1) - math.log(k))

    def lean_log_evidence(self, detector: FloatArray) -> FloatArray:
        """log of the lean detector: a CUSUM of "the floor" against "the floor plus
        `lean_margin`". Not a test (it pauses nothing): it says early that answers lean
        towards failure, so that the audit rate can rise before the test has its proof."""
        return np.asarray(detector[..., -1])

    # -- passing: the mixture test since publishing ---------------------------------------------

    def pass_log_evidence(self, n: ArrayLike, agreed: ArrayLike) -> FloatArray:
        """log of the mixture likelihood ratio that agreement is above the floor."""
        n_, k_ = np.asarray(n, dtype=float)[..., None], np.asarray(agreed, dtype=float)[..., None]
        agree, disagree = self._pass
        terms = k_ * agree + (n_ - k_) * disagree
        return np.asarray(_logsumexp(terms, axis=-1) - math.log(len(agree)))

    def below_log_evidence(self, n: ArrayLike, agreed: ArrayLike) -> FloatArray:
        """log of the mixture likelihood ratio that agreement is below the floor, over all the
        answers at once (no restarts): what the evidence gate reads from a replay's counts."""
        n_, k_ = np.asarray(n, dtype=float)[..., None], np.asarray(agreed, dtype=float)[..., None]
        agree, disagree = self._fail[0][:-1], self._fail[1][:-1]
        terms = k_ * agree + (n_ - k_) * disagree
        return np.asarray(_logsumexp(terms, axis=-1) - math.log(len(agree)))

    def answers_to_prove(self, n: int, agreed: int) -> int | None:
        """How many more answers, agreeing at the rate seen so far, would prove agreement above
        the floor: 0 once proven, None when the rate seen is not above the floor (with no
        answers yet: how many, all agreeing, it would take at least)."""
        if self.pass_log_evidence(n, agreed) >= self.log_proof:
            return 0
        rate = agreed / n if n else 1.0  # no answers yet: the fewest that could prove it
        if rate <= self.floor:
            return None
        more = np.arange(1, 100_001, dtype=float)
        reached = self.pass_log_evidence(n + more, agreed + more * rate) >= self.log_proof
        return int(more[np.argmax(reached)]) if reached.any() else None


@dataclass(frozen=True)
class CellVerdict:
    """One cell's sequential figures: `fail_evidence` and `pass_evidence` are the e-values
    (likelihood ratios) against "at or above the floor" and "at or below the floor"."""

    n: int
    agreed: int
    fail_evidence: float
    pass_evidence: float
    verdict: str  # "fail", "pass" or "inconclusive" (Verdict's values)
    to_prove: int | None
    detector: FloatArray = field(repr=False, compare=False,
                                 default_factory=lambda: np.zeros(0))  # what the audit rate reads

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "agreed": self.agreed, "fail_evidence": self.fail_evidence,
                "pass_evidence": self.pass_evidence, "verdict": self.verdict,
                "answers_to_prove": self.to_prove}


def cell_verdict(test: SequentialTest, answers: ArrayLike) -> CellVerdict:
    """The verdict on a cell's answers in order: fail when the e-detector reaches the pause
    threshold, pass when agreement above the floor is proven, otherwise inconclusive."""
    agreed = np.asarray(answers, dtype=bool)
    n, k = int(agreed.size), int(agreed.sum())
    detector = test.detector_fold(agreed)
    fail = float(test.fail_log_evidence(detector))
    proof = float(test.pass_log_evidence(n, k))
    if fail >= test.log_pause:
        verdict = "fail"
    elif proof >= test.log_proof:
        verdict = "pass"
    else:
        verdict = "inconclusive"
    return CellVerdict(n=n, agreed=k, fail_evidence=_exp(fail), pass_evidence=_exp(proof),
                       verdict=verdict, to_prove=test.answers_to_prove(n, k), detector=detector)


@dataclass(frozen=True)
class AuditRates:
    """The adaptive audit rate of a cell: `base` once agreement is proven and nothing leans
    towards failure, `thin` while the evidence is thin, `high` while it leans towards failure
    (the lean detector has reached `lean`, in logs, or the failure evidence half the pause
    threshold)."""

    base: float
    high: float
    thin: float
    lean: float = math.log(10.0)

    @classmethod
    def around(cls, base: float, *, high: float, adaptive: bool = True) -> AuditRates:
        if not adaptive:
            return cls(base=base, high=base, thin=base)
        high = max(base, high)
        return cls(base=base, high=high, thin=min(high, max(base, 4 * base)))

    def rate(self, test: SequentialTest, *, detector: FloatArray, pass_log: ArrayLike
             ) -> FloatArray:
        """The rate for the next automated case, from the evidence so far (predictable, so
        that weighting each audit by 1/rate keeps the audit estimate unbiased)."""
        leaning = ((test.lean_log_evidence(detector) >= self.lean)
                   | (test.fail_log_evidence(detector) >= test.log_pause / 2))
        proven = np.asarray(pass_log, dtype=float) >= test.log_proof
        return np.where(leaning, self.high, np.where(proven, self.base, self.thin))


def _log_ratios(alternatives: FloatArray, floor: float) -> tuple[FloatArray, FloatArray]:
    return (np.log(alternatives / floor), np.log((1 - alternatives) / (1 - floor)))


def _logsumexp(values: FloatArray, axis: int) -> FloatArray:
    top = np.max(values, axis=axis, keepdims=True)
    return np.asarray(np.squeeze(top, axis=axis)
                      + np.log(np.sum(np.exp(values - top), axis=axis)))


def _exp(log_value: float) -> float:
    return math.exp(min(log_value, 700.0))
