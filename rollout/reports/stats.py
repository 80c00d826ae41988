"""Statistics on small aggregated tables: plain values in, plain values out."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reviewplatform.stats import Proportion, proportion


@dataclass(frozen=True)
class Kappa:
    kappa: float | None
    low: float | None
    high: float | None


def cohens_kappa(table: Sequence[Sequence[int]]) -> Kappa:
    """Cohen's kappa of a square agreement table, with its asymptotic 95% interval."""
    m = np.asarray(table, dtype=float)
    n = m.sum()
    if n == 0:
        return Kappa(None, None, None)
    po = np.trace(m) / n
    rows, cols = m.sum(axis=1) / n, m.sum(axis=0) / n
    pe = float(rows @ cols)
    if pe >= 1.0:
        return Kappa(1.0 if po == 1.0 else None, None, None)
    kappa = (po - pe) / (1 - pe)
    se = math.sqrt(max(po * (1 - po), 0.0) / (n * (1 - pe) ** 2))
    return Kappa(float(kappa), float(kappa - 1.96 * se), float(kappa + 1.96 * se))


@dataclass(frozen=True)
class ClassFigures:
    label: str
    support: int  # human decisions with this label
    predicted: int  # model answers with this label
    correct: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.correct / self.support if self.support else None

    @property
    def recall_interval(self) -> Proportion:
        return proportion(self.correct, self.support)

    @property
    def precision_interval(self) -> Proportion:
        return proportion(self.correct, self.predicted)


def per_class(labels: list[str], confusion: Sequence[Sequence[int]]) -> list[ClassFigures]:
    """Precision and recall of the model per class; rows are humans, columns the model."""
    m = np.asarray(confusion, dtype=int).reshape(len(labels), len(labels))
    return [ClassFigures(label=label, support=int(m[i].sum()), predicted=int(m[:, i].sum()),
                         correct=int(m[i, i])) for i, label in enumerate(labels)]


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    n: int
    agreed: int
    mean_confidence: float | None

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.n if self.n else None


def expected_calibration_error(bins: Sequence[CalibrationBin]) -> float | None:
    """Mean |agreement - confidence| over bins, weighted by their share of cases."""
    total = sum(b.n for b in bins)
    if not total:
        return None
    return sum(b.n / total * abs((b.agreement or 0.0) - (b.mean_confidence or 0.0))
               for b in bins if b.n)


@dataclass(frozen=True)
class WeightedAgreement:
    """Horvitz-Thompson estimate: each audit stands for 1/audit_rate automated decisions."""

    audits: int
    agreed: int
    estimate: float | None
    low: float | None
    high: float | None
    effective_n: float
    represented: float  # sum of weights: the automated decisions the audits stand for


def inverse_rate_weighted(groups: Sequence[tuple[float, int, int]]) -> WeightedAgreement:
    """`groups`: (sampling rate, audits, agreed) per rate. The interval is Wilson's on the
    Kish effective sample size, so unequal weights widen it."""
    usable = [(r, n, k) for r, n, k in groups if r > 0 and n > 0]
    audits = sum(n for _, n, _ in usable)
    agreed = sum(k for _, _, k in usable)
    weight = sum(n / r for r, n, _ in usable)
    if not usable or weight == 0:
        return WeightedAgreement(audits, agreed, None, None, None, 0.0, 0.0)
    estimate = sum(k / r for r, _, k in usable) / weight
    effective = weight ** 2 / sum(n / r ** 2 for r, n, _ in usable)
    interval = proportion(round(estimate * effective), max(round(effective), 1))
    return WeightedAgreement(audits=audits, agreed=agreed, estimate=estimate,
                             low=interval.low, high=interval.high, effective_n=effective,
                             represented=weight)


@dataclass(frozen=True)
class MixTest:
    """Decided labels during the shadow stage against since the model took over."""

    scope: str
    labels: list[str]
    shadow: list[int]
    since: list[int]
    chi2: float | None
    dof: int | None
    p_value: float | None
    distance: float | None  # total variation distance of the two distributions

    @property
    def shadow_n(self) -> int:
        return sum(self.shadow)

    @property
    def since_n(self) -> int:
        return sum(self.since)

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < 0.01

    @property
    def rows(self) -> list[tuple[str, int, float | None, int, float | None]]:
        a, b = sum(self.shadow), sum(self.since)
        return [(label, s, s / a if a else None, t, t / b if b else None)
                for label, s, t in zip(self.labels, self.shadow, self.since, strict=True)]


def action_mix_test(scope: str, labels: list[str], shadow: list[int], since: list[int]
                    ) -> MixTest:
    """Chi-square test of homogeneity on the 2 x k table (labels seen in neither dropped)."""
    keep = [i for i in range(len(labels)) if shadow[i] + since[i] > 0]
    a, b = sum(shadow), sum(since)
    chi2 = p = dof = distance = None
    if a and b:
        distance = 0.5 * sum(abs(shadow[i] / a - since[i] / b) for i in keep)
        if len(keep) >= 2:
            # scipy loads on first use (see reviewplatform.stats: a second at start-up).
            from scipy.stats import chi2_contingency

            result = chi2_contingency([[shadow[i] for i in keep], [since[i] for i in keep]])
            chi2, p, dof = float(result[0]), float(result[1]), int(result[2])
    return MixTest(scope=scope, labels=labels, shadow=shadow, since=since, chi2=chi2, dof=dof,
                   p_value=p, distance=distance)


def mcnemar_p(challenger_only: int, champion_only: int) -> float | None:
    """Exact McNemar test on the discordant pairs of two models on the same cases."""
    if challenger_only + champion_only == 0:
        return None
    from statsmodels.stats.contingency_tables import mcnemar

    result = mcnemar([[0, challenger_only], [champion_only, 0]], exact=True)
    return float(result.pvalue)
