"""A champion registered without a reference set gets one from the first cases reviewers
decided with one of its labels, and its deployment's input limits are fitted from them."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from inference.models import DomainThresholds, ReferenceSet
from reviewplatform.models import Decision
from reviewplatform.tasks import reference_sets_fill
from rollout.selectors import policy_current
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


@pytest.fixture
def decide(make_case, deployment):
    policy = policy_current(deployment_id=deployment.pk)

    def decided(label: str, source: str = Decision.Source.HUMAN):
        case = make_case()
        Decision.objects.create(case=case, label=label, source=source, policy_version=policy)
        return case
    return decided


def test_it_takes_the_first_cases_reviewers_decided_in_domain(decide, stored_champion,
                                                              settings):
    settings.REFERENCE_FROM_REVIEWS = 10
    first = [decide(str(n % 10)) for n in range(10)]
    decide("out_of_domain")  # no label of the model's: not like its training images
    decide("3", source=Decision.Source.MODEL)  # the model's own decision: not reviewed
    later = decide("4")

    assert reference_sets_fill() == 1

    reference = ReferenceSet.objects.get(model_version=stored_champion)
    assert (reference.origin, reference.size) == ("reviews", 10)
    assert reference.by_label == {str(n): 1 for n in range(10)}
    stored = list(reference.images.order_by("id"))
    assert [image.label for image in stored] == [case.decision.label for case in first]
    for image, case in zip(stored, first, strict=True):
        assert image.image.name != case.image.name  # a copy: the case's retention is its own
        assert default_storage.open(image.image.name).read() == case.image.open().read()
    assert later.image.name not in {image.image.name for image in stored}
    limits = DomainThresholds.objects.get(deployment=stored_champion.deployment)
    assert limits.min_pixels == 32 * 32 // 2
    # Once made, it stays: a second run makes nothing.
    assert reference_sets_fill() == 0


def test_it_waits_for_enough_reviewed_cases(decide, stored_champion, settings):
    settings.REFERENCE_FROM_REVIEWS = 10
    for n in range(9):
        decide(str(n))

    assert reference_sets_fill() == 0
    assert not ReferenceSet.objects.exists()
    assert not DomainThresholds.objects.exists()


def test_it_keeps_input_limits_already_fitted(decide, stored_champion, settings):
    settings.REFERENCE_FROM_REVIEWS = 10
    DomainThresholds.objects.create(deployment=stored_champion.deployment, min_pixels=7)
    for n in range(10):
        decide(str(n))

    assert reference_sets_fill() == 1
    assert DomainThresholds.objects.get().min_pixels == 7
