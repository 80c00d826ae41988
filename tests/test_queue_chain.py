"""Second opinions, escalation and the final decision; review modes; gold cases."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from inference.models import Prediction
from review.selectors import human_agreement, reveal_effect, reviewer_figures
from review.services import (
    review_answer_pend,
    review_claim_next,
    review_release,
    review_submit,
    task_shown_reason,
)
from reviewplatform.errors import ServiceError
from reviewplatform.models import Case, Decision, GoldCase, Review, ReviewMode, ReviewTask
from reviewplatform.services import case_gold_mark
from tests.conftest import pending_answers_stored
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


def claim_and_answer(reviewer: User, label: str, **kwargs) -> Review:
    task = review_claim_next(reviewer=reviewer, **kwargs)
    assert task is not None, f"{reviewer} got nothing"
    return review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                         answer=label)


def open_tasks(case: Case) -> list[str]:
    return list(ReviewTask.objects.filter(case=case).exclude(status=ReviewTask.Status.DONE)
                .values_list("reason", flat=True))


# The review chain


def test_it_decides_at_once_when_the_reviewer_agrees_with_the_model(enqueue, reviewer):
    task = enqueue(says="4")

    claim_and_answer(reviewer, "4")

    assert Decision.objects.get(case=task.case).label == "4"
    assert open_tasks(task.case) == []


def test_it_asks_a_second_opinion_when_a_reviewer_disagrees_with_a_confident_model(
        enqueue, reviewer, other_reviewer):
    task = enqueue(says="4", confidence=0.97)

    first = claim_and_answer(reviewer, "9")

    case = Case.objects.get(pk=task.case_id)
    assert case.status == Case.Status.IN_REVIEW
    assert not Decision.objects.filter(case=case).exists()
    second = ReviewTask.objects.get(case=case, reason=ReviewTask.Reason.SECOND_OPINION)
    assert second.follows == first
    assert review_claim_next(reviewer=reviewer) is None  # someone else's
    assert review_claim_next(reviewer=other_reviewer).pk == second.pk


def test_it_does_not_ask_a_second_opinion_against_an_unsure_model(enqueue, reviewer):
    # Below the policy's threshold (0.9 by default): the model is not confident.
    task = enqueue(says="4", confidence=0.6)

    claim_and_answer(reviewer, "9")

    assert Decision.objects.get(case=task.case).label == "9"


@pytest.mark.parametrize("answer", [Review.CANNOT_TELL, Review.OUT_OF_DOMAIN])
def test_it_takes_cannot_tell_and_out_of_domain_as_no_competing_label(enqueue, reviewer,
                                                                      answer):
    task = enqueue(says="4", confidence=0.99)

    claim_and_answer(reviewer, answer)

    assert Decision.objects.get(case=task.case).label == answer


def test_it_decides_when_the_second_opinion_agrees(enqueue, reviewer, other_reviewer):
    task = enqueue(says="4")
    claim_and_answer(reviewer, "9")

    second = claim_and_answer(other_reviewer, "9")

    decision = Decision.objects.get(case=task.case)
    assert (decision.label, decision.source, decision.review) == ("9", "human", second)
    assert decision.policy_version_id == task.policy_version_id
    assert Case.objects.get(pk=task.case_id).status == Case.Status.DECIDED
    assert human_agreement().k == 1 and human_agreement().n == 1


def test_it_escalates_to_a_senior_when_two_reviewers_disagree(
        enqueue, reviewer, other_reviewer, third_reviewer, senior):
    task = enqueue(says="4")
    claim_and_answer(reviewer, "9")
    second = claim_and_answer(other_reviewer, "4")

    escalation = ReviewTask.objects.get(case=task.case, reason=ReviewTask.Reason.ESCALATION)
    assert escalation.follows == second
    assert not Decision.objects.filter(case=task.case).exists()
    assert review_claim_next(reviewer=third_reviewer) is None  # seniors only
    final = claim_and_answer(senior, "9")

    decision = Decision.objects.get(case=task.case)
    assert (decision.label, decision.review) == ("9", final)
    assert Case.objects.get(pk=task.case_id).status == Case.Status.DECIDED
    assert open_tasks(task.case) == []
    agreement = human_agreement()
    assert (agreement.k, agreement.n) == (0, 1)


def test_it_keeps_the_urgency_of_a_case_through_its_chain(enqueue, deployment, reviewer,
                                                          other_reviewer):
    deployment.urgent_labels = ["4"]
    deployment.save()
    enqueue()
    task = enqueue(says="4")
    assert review_claim_next(reviewer=reviewer).pk == task.pk
    held = ReviewTask.objects.get(pk=task.pk)
    review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer, answer="1")

    second = ReviewTask.objects.get(case=task.case, reason=ReviewTask.Reason.SECOND_OPINION)
    assert second.urgent
    assert review_claim_next(reviewer=other_reviewer).pk == second.pk


def test_it_sends_the_configured_share_of_cases_to_a_second_opinion(enqueue, deployment,
                                                                    reviewer):
    deployment.second_opinion_rate = 0.5
    deployment.save()
    tasks = [enqueue() for _ in range(40)]
    for _ in tasks:
        claim_and_answer(reviewer, "1")

    asked = ReviewTask.objects.filter(reason=ReviewTask.Reason.SECOND_OPINION).count()
    assert 8 <= asked <= 32  # a stable hash of the case id, about half
    assert Decision.objects.count() == 40 - asked


def test_it_never_sends_a_case_to_a_second_opinion_at_rate_zero(enqueue, reviewer):
    for _ in range(10):
        enqueue()
        claim_and_answer(reviewer, "1")

    assert not ReviewTask.objects.filter(reason=ReviewTask.Reason.SECOND_OPINION).exists()


def test_it_keeps_the_models_decision_when_an_audit_disagrees(enqueue, stored_champion,
                                                              reviewer, other_reviewer):
    task = enqueue(reason=ReviewTask.Reason.AUDIT, says="4")
    Decision.objects.create(case=task.case, label="4", source=Decision.Source.MODEL,
                            policy_version=task.policy_version,
                            prediction=Prediction.objects.get(case=task.case))

    claim_and_answer(reviewer, "9")
    claim_and_answer(other_reviewer, "9")

    decision = Decision.objects.get(case=task.case)
    assert (decision.label, decision.source) == ("4", Decision.Source.MODEL)
    assert human_agreement().n == 1


# Review modes


def test_it_shows_the_model_in_assisted_mode_and_stores_the_mode(enqueue, deployment,
                                                                 reviewer):
    deployment.review_mode = ReviewMode.ASSISTED
    deployment.save()
    enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE, says="4", confidence=0.7)

    review = claim_and_answer(reviewer, "4")

    assert review.mode == Review.Mode.ASSISTED


@pytest.mark.parametrize("reason", ["audit", "second_opinion", "escalation"])
def test_it_keeps_audits_and_follow_ups_blind_in_any_mode(enqueue, deployment, senior, reason):
    deployment.review_mode = ReviewMode.ASSISTED
    deployment.save()
    enqueue(reason=reason)

    assert claim_and_answer(senior, "4").mode == Review.Mode.BLIND


def test_it_keeps_both_answers_in_blind_then_reveal_mode(enqueue, deployment, reviewer):
    deployment.review_mode = ReviewMode.REVEALED
    deployment.save()
    task = enqueue(says="4", confidence=0.8)
    held = review_claim_next(reviewer=reviewer)

    first = review_answer_pend(task_id=held.pk, lease_token=held.lease_token,
                               reviewer=reviewer, answer="9")
    assert first is None and not Review.objects.exists()
    assert ReviewTask.objects.get(pk=task.pk).blind_answer == "9"
    assert review_answer_pend(task_id=held.pk, lease_token=held.lease_token,
                              reviewer=reviewer, answer="4") is not None
    assert pending_answers_stored() == 1
    review = Review.objects.get()

    assert (review.blind_answer, review.answer, review.mode) == ("9", "4", Review.Mode.REVEALED)
    assert Decision.objects.get(case=task.case).label == "4"
    effect = reveal_effect()
    assert (effect.n, effect.changed, effect.changed_to_model) == (1, 1, 1)


def test_it_forgets_a_blind_answer_when_the_task_is_released(enqueue, deployment, reviewer,
                                                             other_reviewer):
    deployment.review_mode = ReviewMode.REVEALED
    deployment.save()
    task = enqueue(says="4")
    held = review_claim_next(reviewer=reviewer)
    review_answer_pend(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                       answer="9")

    review_release(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer)

    again = review_claim_next(reviewer=other_reviewer)
    assert again.pk == task.pk and again.blind_answer == ""


# Gold cases


@pytest.fixture
def gold(make_case, admin_user) -> Case:
    case = make_case()
    case_gold_mark(case=case, label="7", actor=admin_user)
    return case


def always() -> float:
    return 0.0


def test_it_refuses_a_gold_answer_outside_the_labels(make_case, admin_user):
    with pytest.raises(ServiceError):
        case_gold_mark(case=make_case(), label="cat", actor=admin_user)
    assert not GoldCase.objects.exists()


def test_it_mixes_gold_cases_in_that_look_like_any_other(enqueue, gold, deployment, reviewer):
    deployment.gold_rate = 0.2
    deployment.save()
    enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE)

    task = review_claim_next(reviewer=reviewer, rng=always)

    assert task.case_id == gold.pk
    assert task.reason == ReviewTask.Reason.GOLD
    assert task_shown_reason(task) == ReviewTask.Reason.SHADOW  # what the page says


def test_it_serves_no_gold_case_above_the_rate(enqueue, gold, deployment, reviewer):
    deployment.gold_rate = 0.2
    deployment.save()
    normal = enqueue()

    assert review_claim_next(reviewer=reviewer, rng=lambda: 0.5).pk == normal.pk


def test_it_serves_gold_at_about_the_set_rate(enqueue, make_case, admin_user, deployment,
                                              reviewer):
    deployment.gold_rate = 0.25
    deployment.save()
    for _ in range(40):
        case_gold_mark(case=make_case(), label="1", actor=admin_user)
    for _ in range(80):
        enqueue()
    served = []
    for _ in range(80):
        task = review_claim_next(reviewer=reviewer)
        served.append(task)
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer="1")

    gold_share = sum(task.reason == ReviewTask.Reason.GOLD for task in served) / len(served)
    assert 0.08 <= gold_share <= 0.45


def test_it_serves_each_gold_case_once_per_reviewer(enqueue, gold, deployment, reviewer):
    deployment.gold_rate = 1.0
    deployment.save()
    normal = enqueue()
    first = review_claim_next(reviewer=reviewer, rng=always)
    review_submit(task_id=first.pk, lease_token=first.lease_token, reviewer=reviewer,
                  answer="7")

    assert review_claim_next(reviewer=reviewer, rng=always).pk == normal.pk


def test_it_never_decides_a_case_from_a_gold_answer(enqueue, gold, deployment, reviewer):
    deployment.gold_rate = 1.0
    deployment.save()
    enqueue()

    claim_and_answer(reviewer, "3", rng=always)

    assert not Decision.objects.filter(case=gold).exists()
    assert not ReviewTask.objects.filter(reason=ReviewTask.Reason.SECOND_OPINION).exists()


def test_it_drops_a_skipped_gold_task(enqueue, gold, deployment, reviewer, other_reviewer):
    deployment.gold_rate = 0.5
    deployment.save()
    normal = enqueue()
    task = review_claim_next(reviewer=reviewer, rng=always)

    review_release(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer)

    assert not ReviewTask.objects.filter(reason=ReviewTask.Reason.GOLD).exists()
    assert review_claim_next(reviewer=other_reviewer, rng=lambda: 0.9).pk == normal.pk


def test_it_tracks_each_reviewers_accuracy_on_gold(enqueue, make_case, admin_user, deployment,
                                                   reviewer, other_reviewer):
    deployment.gold_rate = 1.0
    deployment.save()
    for label in ["1", "2", "3"]:
        case_gold_mark(case=make_case(), label=label, actor=admin_user)
    enqueue()
    for _ in range(3):
        task = review_claim_next(reviewer=reviewer, rng=always)
        truth = task.case.gold.label
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer=truth if truth != "3" else "8")

    figures = {f.username: f for f in reviewer_figures(
        reviewers=User.objects.filter(pk__in=[reviewer.pk, other_reviewer.pk]))}
    assert (figures["reviewer"].gold.k, figures["reviewer"].gold.n) == (2, 3)
    assert figures["other-reviewer"].gold.n == 0
