"""The outbox: every change a client may be told of is written as a CaseEvent in the
transaction of the change, once."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from reviewplatform import lifecycle
from reviewplatform.instants import instant_text
from reviewplatform.lifecycle import CaseRoute
from reviewplatform.models import Case, CaseEvent, Decision, ReviewTask
from rollout.selectors import policy_current
from tests.test_queue_chain import claim_and_answer
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


def events(case: Case) -> list[tuple[str, int, dict]]:
    return list(CaseEvent.objects.filter(case=case).order_by("id")
                .values_list("type", "version", "data"))


@pytest.fixture
def received_pair(make_case):
    cases = [make_case(), make_case()]
    Case.objects.filter(pk__in=[c.pk for c in cases]).update(status=Case.Status.RECEIVED)
    return cases


def test_routing_writes_a_decided_and_a_queued_event_with_its_change(received_pair,
                                                                    deployment):
    to_model, to_humans = received_pair
    policy = policy_current(deployment_id=deployment.pk)

    def router(cases):
        return [CaseRoute(case_id=to_model.pk, policy_version_id=policy.pk, review_reason=None,
                          model_label="7", rule="north"),
                CaseRoute(case_id=to_humans.pk, policy_version_id=policy.pk,
                          review_reason=ReviewTask.Reason.LOW_CONFIDENCE)]

    lifecycle.cases_route(case_ids=[to_model.pk, to_humans.pk], router=router)
    # Routed again (a redelivered job): nothing is routed, nothing told twice.
    assert lifecycle.cases_route(case_ids=[to_model.pk, to_humans.pk], router=router) == []

    decision = Decision.objects.get(case=to_model)
    (decided,) = events(to_model)
    assert decided == ("case.decided", 1, {"decision": {
        "label": "7", "source": "model", "decided_at": instant_text(decision.decided_at)}})
    ((kind, version, data),) = events(to_humans)
    assert (kind, version, data["queued"]["reason"]) == ("case.queued", 1, "low_confidence")
    assert CaseEvent.objects.filter(dispatched_at__isnull=True).count() == 2


def test_a_rolled_back_routing_leaves_no_event(received_pair, deployment):
    policy = policy_current(deployment_id=deployment.pk)
    case = received_pair[0]

    with pytest.raises(RuntimeError), transaction.atomic():
        lifecycle.cases_route(case_ids=[case.pk], router=lambda cases: [CaseRoute(
            case_id=case.pk, policy_version_id=policy.pk, review_reason=None, model_label="1")])
        raise RuntimeError("the caller's transaction fails after routing")

    assert not Decision.objects.filter(case=case).exists()
    assert events(case) == []


def test_a_concluding_answer_writes_the_decided_event_in_its_statement(enqueue, reviewer):
    task = enqueue(says="4")

    review = claim_and_answer(reviewer, "4")

    decision = Decision.objects.get(case=task.case)
    assert decision.review_id == review.pk
    assert events(task.case) == [("case.decided", 1, {"decision": {
        "label": "4", "source": "human", "decided_at": instant_text(review.created_at)}})]


def test_an_answer_that_decides_nothing_tells_nothing(enqueue, reviewer, other_reviewer,
                                                     deployment):
    deployment.second_opinion_rate = 0.0
    deployment.save()
    task = enqueue(says="4", confidence=0.99)

    claim_and_answer(reviewer, "5")  # disagrees with a confident model: a second opinion

    assert not Decision.objects.filter(case=task.case).exists()
    assert events(task.case) == []
    claim_and_answer(other_reviewer, "5")
    assert [kind for kind, *_ in events(task.case)] == ["case.decided"]


def test_the_database_refuses_an_event_written_twice(make_case):
    case = make_case()
    CaseEvent.objects.create(case=case, type=CaseEvent.Type.DECIDED, data={})

    with pytest.raises(IntegrityError), transaction.atomic():
        CaseEvent.objects.create(case=case, type=CaseEvent.Type.DECIDED, data={})
    assert CaseEvent.objects.filter(case=case).count() == 1
