"""Small statistics every layer may use: a proportion with its Wilson 95% interval."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Proportion:
    """k of n (for an agreement: cases agreed of cases compared), with the Wilson 95%
    interval; no interval when n is 0."""

    k: int
    n: int
    low: float | None
    high: float | None

    @property
    def rate(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def agreed(self) -> int:
        return self.k


def proportion(k: int, n: int) -> Proportion:
    if n == 0:
        return Proportion(k=0, n=0, low=None, high=None)
    # statsmodels brings pandas and scipy (over a second to import): loaded on first use, so
    # that processes which never compute an interval start without it.
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return Proportion(k=k, n=n, low=float(low), high=float(high))
