"""The report's figures: what each section shows, as plain data (no queries here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from reviewplatform.stats import Proportion, proportion

from . import stats
from .drift import MIN_CASES, DriftTest
from .filters import ReportFilters

CONFIDENCE_BINS = 10
AUDIT_RATE_SCALE = 10_000  # an audit fact's bin: its sampling rate in 1/10,000
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PERCENTILES = (0.5, 0.9, 0.99)


@dataclass
class Headline:
    """Confusion, agreement, kappa, per-class figures and calibration of the compared model
    against human decisions."""

    labels: list[str]
    confusion: list[list[int]]
    agreement: Proportion
    kappa: stats.Kappa
    classes: list[stats.ClassFigures]
    calibration: list[stats.CalibrationBin]
    ece: float | None

    @property
    def confusion_rows(self) -> list[tuple[str, list[int]]]:
        return list(zip(self.labels, self.confusion, strict=True))


@dataclass
class HumanAgreement:
    """Second opinions against the review they check: the bar the model is held to."""

    agreement: Proportion
    kappa: stats.Kappa


@dataclass
class Slice:
    """Decisions of one region, local hour, weekday or day: volume, automation,
    out-of-domain, confidence and agreement."""

    key: Any
    decisions: int = 0
    by_model: int = 0
    ood: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0
    n: int = 0
    agreed: int = 0

    @property
    def agreement(self) -> Proportion:
        return proportion(self.agreed, self.n)

    @property
    def automation_rate(self) -> float | None:
        return self.by_model / self.decisions if self.decisions else None

    @property
    def ood_rate(self) -> float | None:
        return self.ood / self.confidence_n if self.confidence_n else None

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.confidence_n if self.confidence_n else None

    def add(self, row: Mapping[str, Any]) -> None:
        self.decisions += row["decisions"]
        self.by_model += row["by_model"]
        self.ood += row["ood"]
        self.confidence_sum += row["conf_sum"] or 0.0
        self.confidence_n += row["conf_n"]
        self.n += row["n"]
        self.agreed += row["agreed"]


@dataclass
class Slices:
    by_region: list[Slice] = field(default_factory=list)
    by_hour: list[Slice] = field(default_factory=list)
    by_weekday: list[Slice] = field(default_factory=list)
    by_day: list[Slice] = field(default_factory=list)
    night: Slice = field(default_factory=lambda: Slice("night 20:00-06:00"))
    day: Slice = field(default_factory=lambda: Slice("day 06:00-20:00"))


@dataclass
class InputDay:
    """The compared model's answers on every case captured that local day, decided or not."""

    key: date
    predicted: int = 0
    ood: int = 0
    confidence_sum: float = 0.0
    confidence_n: int = 0

    @property
    def ood_rate(self) -> float | None:
        return self.ood / self.predicted if self.predicted else None

    @property
    def mean_confidence(self) -> float | None:
        return self.confidence_sum / self.confidence_n if self.confidence_n else None


@dataclass
class DriftCell:
    """One region's cases captured one local day, as the compared model saw them, reviewed or
    not: the share it flagged out of domain, and whether their features sit where its
    reference set's do (`drift`). `compared`: the cases with features; `test` is None with
    fewer than MIN_CASES of them or without reference features."""

    region: str
    key: date
    predicted: int = 0
    ood: int = 0
    compared: int = 0
    test: DriftTest | None = None

    @property
    def ood_rate(self) -> float | None:
        return self.ood / self.predicted if self.predicted else None

    @property
    def verdict(self) -> str:
        if self.compared < MIN_CASES:
            return "too few cases"
        if self.test is None:
            return "no reference features"
        return "drifted" if self.test.drifted else "like the reference"


@dataclass(frozen=True)
class Comparison:
    """Another model version against the compared one, on the same human-decided cases."""

    name: str
    version_id: int
    is_champion: bool
    n: int
    agreed: int
    compared_agreed: int  # the compared model (usually the champion) on the same cases
    challenger_only: int
    compared_only: int
    p_value: float | None

    @property
    def agreement(self) -> Proportion:
        return proportion(self.agreed, self.n)

    @property
    def compared_agreement(self) -> Proportion:
        return proportion(self.compared_agreed, self.n)


@dataclass(frozen=True)
class AuditEstimate:
    """Agreement inside the automated scope, from audits."""

    weighted: stats.WeightedAgreement
    raw: Proportion
    automated: int  # model decisions under the filters


@dataclass
class Route:
    reason: str
    tasks: int
    done: int
    waiting: int
    minutes: float
    wait_p: dict[str, float | None]  # seconds from creation to first claim, per PERCENTILES


@dataclass
class Workload:
    by_model: int
    routes: list[Route]
    oldest_waiting_s: float | None
    wait_p: dict[str, float | None]

    @property
    def total_minutes(self) -> float:
        return sum(r.minutes for r in self.routes)


@dataclass
class Counts:
    cases: int
    by_status: dict[str, int]
    by_source: dict[str, int]
    first_capture: Any
    last_capture: Any


@dataclass
class Report:
    filters: ReportFilters
    counts: Counts
    headline: Headline
    humans: HumanAgreement
    slices: Slices
    inputs: list[InputDay]
    drift: list[DriftCell]
    models: list[Comparison]
    audits: AuditEstimate
    mix: list[stats.MixTest]
    workload: Workload
