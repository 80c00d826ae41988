"""Drift before labels: do a day's case features sit where the reference set's do?

The statistic is the maximum mean discrepancy (MMD², unbiased) between the case features and
the reference features, with a Gaussian kernel whose bandwidth is the median distance between
reference features (the median heuristic), and a permutation p-value: the pooled features are
relabelled at random PERMUTATIONS times, and p = (1 + relabellings at least as discrepant) /
(1 + PERMUTATIONS). Both sides are subsampled to CAP rows first, and every draw comes from one
seeded generator, so the same rows give the same figure on every load of the page.

A few lines of numpy keep it in the report's process: with at most 2 x CAP rows the kernel
matrix is 400 x 400, and every permutation is one row of a single matrix product, so one
cell costs a few milliseconds (2-8 ms for 64 to 512 features on one core); no new
dependency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAP = 200
PERMUTATIONS = 200
ALPHA = 0.01
MIN_CASES = 10
SEED = 0
RECENT_DAYS = 14  # the report judges the period's last local days that have cases


@dataclass(frozen=True)
class DriftTest:
    """MMD² of the cases against the reference, and its permutation p-value."""

    mmd2: float
    p_value: float
    cases: int  # rows compared on each side, after subsampling
    reference: int
    bandwidth: float
    permutations: int

    @property
    def drifted(self) -> bool:
        return self.p_value < ALPHA


def subsample(x: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most `cap` rows of `x`, drawn without replacement."""
    if len(x) <= cap:
        return x
    return x[np.sort(rng.choice(len(x), size=cap, replace=False))]


def _squared_distances(x: np.ndarray) -> np.ndarray:
    norms = (x * x).sum(1)
    return np.clip(norms[:, None] + norms[None, :] - 2 * x @ x.T, 0, None)


def median_bandwidth(reference: np.ndarray) -> float:
    """The median distance between two distinct reference rows (1.0 if they all coincide)."""
    squared = _squared_distances(np.asarray(reference, dtype=np.float64))
    upper = squared[np.triu_indices(len(squared), k=1)]
    median = float(np.sqrt(np.median(upper))) if len(upper) else 0.0
    return median if median > 0 else 1.0


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """(1 + the null statistics at least `observed`) / (1 + their number): never 0, and exact
    for a test whose null draws are exchangeable with the observed statistic."""
    return float((1 + int(np.count_nonzero(null >= observed))) / (1 + len(null)))


def _mmd2(kernel: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Unbiased MMD² for each row of `first` (a boolean mask per split of the pooled rows:
    True for the cases' side). With b = 1 - a, every sum over the kernel follows from a'Ka,
    a'K1 and 1'K1, so a split costs one row of a single matrix product."""
    a = first.astype(kernel.dtype)
    n = a.sum(1, dtype=np.float64)
    m = len(kernel) - n
    diagonal = np.diag(kernel).astype(np.float64)
    row_sums = kernel.sum(1, dtype=np.float64)
    aka = ((a @ kernel) * a).sum(1, dtype=np.float64)  # a'Ka
    ak1 = a @ row_sums  # a'K1
    within_a = aka - a @ diagonal
    between = ak1 - aka
    within_b = row_sums.sum() - 2 * ak1 + aka - (diagonal.sum() - a @ diagonal)
    result: np.ndarray = (within_a / (n * (n - 1)) + within_b / (m * (m - 1))
                          - 2 * between / (n * m))
    return result


def drift_test(cases: np.ndarray, reference: np.ndarray, *, bandwidth: float | None = None,
               cap: int = CAP, permutations: int = PERMUTATIONS, seed: int = SEED
               ) -> DriftTest:
    """MMD² between `cases` and `reference` (rows of features), with its permutation p-value.
    `bandwidth`: the kernel's, when the caller measured it once on the whole reference;
    otherwise the median heuristic on the reference rows compared. Each side needs 2 rows."""
    rng = np.random.default_rng(seed)
    x = subsample(np.asarray(cases, dtype=np.float64), cap, rng)
    y = subsample(np.asarray(reference, dtype=np.float64), cap, rng)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the drift test needs at least 2 rows on each side")
    sigma = bandwidth if bandwidth is not None else median_bandwidth(y)
    pooled = np.concatenate([x, y])
    # Single precision for the kernel and its products: twice as fast, and its rounding
    # (1e-7 of a kernel value) is far below any discrepancy worth a verdict.
    squared = _squared_distances(pooled.astype(np.float32))
    kernel = np.exp(squared * np.float32(-0.5 / (sigma * sigma)))
    observed = np.zeros((1, len(pooled)), dtype=bool)
    observed[0, :len(x)] = True
    order = np.argsort(rng.random((permutations, len(pooled))), axis=1)
    shuffled = np.zeros((permutations, len(pooled)), dtype=bool)
    np.put_along_axis(shuffled, order[:, :len(x)], True, axis=1)
    statistic = float(_mmd2(kernel, observed)[0])
    p_value = permutation_p_value(statistic, _mmd2(kernel, shuffled))
    return DriftTest(mmd2=statistic, p_value=p_value,
                     cases=len(x), reference=len(y), bandwidth=sigma, permutations=permutations)
