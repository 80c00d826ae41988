"""The drift statistic of the report: MMD² between case and reference features, with a seeded
permutation p-value (pure numpy, no database)."""

from __future__ import annotations

import numpy as np
import pytest

from rollout.reports.drift import (
    ALPHA,
    CAP,
    PERMUTATIONS,
    drift_test,
    median_bandwidth,
    permutation_p_value,
)


def features(n: int, *, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, scale, size=(n, 16))


@pytest.mark.parametrize("seed", range(5))
def test_it_finds_no_drift_between_samples_of_one_distribution(seed):
    result = drift_test(features(150, seed=100 + seed), features(300, seed=200 + seed),
                        seed=seed)

    assert result.p_value > ALPHA
    assert not result.drifted
    assert abs(result.mmd2) < 0.01


def test_its_p_values_under_no_drift_spread_over_the_unit_interval():
    p_values = [drift_test(features(60, seed=s), features(120, seed=50 + s), seed=s).p_value
                for s in range(20)]

    assert min(p_values) > 0.01  # none of 20 called drifted at the 1% level
    assert 0.3 < float(np.mean(p_values)) < 0.7


@pytest.mark.parametrize(("shift", "scale"), [(0.5, 1.0), (0.0, 1.6)])
def test_it_finds_a_shifted_or_spread_distribution_drifted(shift, scale):
    result = drift_test(features(80, seed=1, shift=shift, scale=scale), features(300, seed=2))

    assert result.p_value == pytest.approx(1 / (1 + PERMUTATIONS))  # no relabelling as far
    assert result.p_value < 0.01
    assert result.drifted
    assert result.mmd2 > 0.02


def test_its_p_value_is_one_plus_the_count_over_one_plus_the_permutations():
    assert permutation_p_value(0.5, np.array([0.1, 0.5, 0.7, 0.2])) == 3 / 5
    assert permutation_p_value(9.0, np.zeros(199)) == 1 / 200
    assert permutation_p_value(-1.0, np.zeros(199)) == 1.0

    result = drift_test(features(40, seed=3, shift=0.1), features(60, seed=4),
                        permutations=99)
    count = result.p_value * 100 - 1
    assert result.permutations == 99
    assert count == pytest.approx(round(count)) and 0 <= round(count) <= 99


def test_it_gives_the_same_figures_for_the_same_rows_and_seed():
    cases, reference = features(500, seed=5, shift=0.05), features(500, seed=6)

    first, again = drift_test(cases, reference), drift_test(cases, reference)

    assert (first.mmd2, first.p_value) == (again.mmd2, again.p_value)


def test_it_subsamples_both_sides_to_the_cap():
    result = drift_test(features(450, seed=7), features(999, seed=8))

    assert (result.cases, result.reference) == (CAP, CAP)
    assert drift_test(features(12, seed=7), features(999, seed=8)).cases == 12


def test_the_bandwidth_is_the_median_distance_between_reference_rows():
    # Four points on a line, 0 1 3 6 apart: distances 1 2 3 3 5 6, median 3.
    reference = np.array([[0.0], [1.0], [3.0], [6.0]])

    assert median_bandwidth(reference) == 3.0
    assert median_bandwidth(np.ones((5, 3))) == 1.0  # all alike: no zero bandwidth
    assert drift_test(features(20, seed=9), reference.repeat(16, 1)).bandwidth == pytest.approx(
        median_bandwidth(reference.repeat(16, 1)))


def test_it_refuses_fewer_than_two_rows_a_side():
    with pytest.raises(ValueError, match="at least 2 rows on each side"):
        drift_test(features(1, seed=0), features(50, seed=1))
