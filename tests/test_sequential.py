"""The sequential tests behind the guardrails and the evidence gate (rollout.sequential)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollout.sequential import AuditRates, SequentialTest, cell_verdict
from rollout.verdicts import Verdict, gate_verdict

FLOOR = 0.85
TEST = SequentialTest(floor=FLOOR, pause_evidence=1000, proof_evidence=40)


def test_it_is_inconclusive_without_answers():
    verdict = cell_verdict(TEST, [])

    assert (verdict.verdict, verdict.fail_evidence, verdict.pass_evidence) == (
        "inconclusive", 1.0, 1.0)


def test_it_pauses_on_the_eighth_disagreement_in_a_row_not_the_seventh():
    # The detector averages the CUSUMs of two alternatives, 0.80 and 0.60 against the floor
    # 0.85: each disagreement multiplies them by 0.2/0.15 and 0.4/0.15.
    def by_hand(k: int) -> float:
        return ((0.2 / 0.15) ** k + (0.4 / 0.15) ** k) / 2

    seven, eight = cell_verdict(TEST, [False] * 7), cell_verdict(TEST, [False] * 8)

    assert seven.fail_evidence == pytest.approx(by_hand(7)) and by_hand(7) < 1000
    assert seven.verdict == "inconclusive"
    assert eight.fail_evidence == pytest.approx(by_hand(8)) and by_hand(8) >= 1000
    assert eight.verdict == "fail"


def test_a_long_healthy_record_does_not_outvote_a_drift():
    # 2,000 agreeing answers, then the model turns bad: the detector restarts at each
    # agreement, so the drift is caught as fast as on a fresh cell.
    verdict = cell_verdict(TEST, [True] * 2000 + [False] * 8)

    assert verdict.verdict == "fail"
    assert verdict.fail_evidence == pytest.approx(cell_verdict(TEST, [False] * 8).fail_evidence)


def test_it_proves_a_healthy_cell_and_says_how_many_more_answers_it_takes():
    thin = cell_verdict(TEST, [True] * 19 + [False])
    assert thin.verdict == "inconclusive"
    assert thin.to_prove is not None and thin.to_prove > 0
    more = round(thin.to_prove * 0.95)
    # As many more answers at the rate seen (19 of 20) prove it; far fewer do not.
    assert TEST.pass_log_evidence(20 + thin.to_prove, 19 + thin.to_prove * 0.95) >= TEST.log_proof
    assert TEST.pass_log_evidence(20 + thin.to_prove // 2, 19 + more // 2) < TEST.log_proof

    proven = cell_verdict(TEST, ([True] * 19 + [False]) * 10)
    assert (proven.verdict, proven.to_prove) == ("pass", 0)


def test_it_never_promises_proof_at_a_rate_at_or_below_the_floor():
    assert TEST.answers_to_prove(100, 80) is None


@given(st.lists(st.booleans(), max_size=300))
def test_the_one_pass_fold_equals_the_answer_by_answer_recursion(answers):
    detector = TEST.detector_new()
    for answer in answers:
        detector = TEST.detector_update(detector, answer)

    assert TEST.detector_fold(answers) == pytest.approx(detector, abs=1e-9)


def test_a_cell_exactly_at_the_floor_is_proven_above_it_at_most_alpha_of_the_time():
    """Ville's inequality, checked by simulation: 4,000 cells at the floor, 400 answers each,
    watched after every answer."""
    rng = np.random.default_rng(7)
    answers = rng.random((4000, 400)) < FLOOR
    n = np.arange(1, 401)
    proven = TEST.pass_log_evidence(n, np.cumsum(answers, axis=1)) >= TEST.log_proof

    assert proven.any(axis=1).mean() <= 1 / 40


def test_a_cell_at_the_floor_runs_on_average_at_least_the_pause_threshold_before_a_pause():
    """The e-detector's guarantee, checked by simulation with a low threshold (20) so that
    pauses happen: the mean number of answers before a mistaken pause is at least 20."""
    test = SequentialTest(floor=FLOOR, pause_evidence=20)
    rng = np.random.default_rng(11)
    cells, horizon = 3000, 4000
    detector = test.detector_new((cells,))
    stopped = np.full(cells, horizon)
    for step in range(horizon):
        detector = test.detector_update(detector, rng.random(cells) < FLOOR)
        newly = (test.fail_log_evidence(detector) >= test.log_pause) & (stopped == horizon)
        stopped[newly] = step + 1
    assert stopped.mean() >= 20


def test_the_gate_asks_for_proof_and_fails_on_evidence_of_low_agreement():
    none = gate_verdict(TEST, n=0, agreed=0, min_sample=30)
    assert none.verdict == Verdict.INCONCLUSIVE and none.to_prove is not None
    assert gate_verdict(TEST, n=40, agreed=40, min_sample=30).verdict == Verdict.PASS
    # Proof on fewer answers than the minimum sample still waits for the sample.
    few = gate_verdict(TEST, n=40, agreed=40, min_sample=60)
    assert (few.verdict, few.to_prove) == (Verdict.INCONCLUSIVE, 20)
    low = gate_verdict(TEST, n=200, agreed=140, min_sample=30)
    assert (low.verdict, low.to_prove) == (Verdict.FAIL, None)


def test_the_audit_rate_is_high_while_leaning_thin_until_proven_then_base():
    rates = AuditRates.around(0.05, high=1.0)
    assert (rates.base, rates.thin, rates.high) == (0.05, 0.2, 1.0)

    def rate(answers: list[bool]) -> float:
        detector = TEST.detector_fold(answers)
        n, k = len(answers), sum(answers)
        return float(rates.rate(TEST, detector=detector, pass_log=TEST.pass_log_evidence(n, k)))

    assert rate([]) == 0.2
    assert rate([True] * 60) == 0.05
    assert rate([True] * 60 + [False] * 3) == 1.0  # three disagreements in a row: leaning
    assert AuditRates.around(0.05, high=1.0, adaptive=False).rate(
        TEST, detector=TEST.detector_fold([False] * 5), pass_log=0.0) == 0.05


@pytest.mark.parametrize("floor", [0.0, 1.0, 1.5])
def test_it_refuses_a_floor_outside_the_open_unit_interval(floor):
    with pytest.raises(ValueError, match="floor"):
        SequentialTest(floor=floor)


def test_it_reports_evidence_as_likelihood_ratios():
    verdict = cell_verdict(TEST, [False])
    assert math.log(verdict.fail_evidence) == pytest.approx(
        math.log(((0.2 / 0.15) + (0.4 / 0.15)) / 2))
