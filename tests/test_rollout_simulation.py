"""Domain shift on real parts: the real learner predicts real images, some made night-time.

East's cameras start sending night-time captures (dark, noisy) while north stays clean. The
input checks flag them, so the model never decides them, and the out-of-domain guardrail pauses
automation in east, and only there, before any reviewer has answered.
"""

from __future__ import annotations

import io
import random
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from inference.demo_model import night_time
from inference.services import domain_thresholds_fit
from reviewplatform.models import Case, Decision, ReviewTask
from reviewplatform.pipeline import predict_waiting
from reviewplatform.services import case_submit
from rollout import guardrails
from rollout.models import ChangeKind
from rollout.services import policy_publish

from .conftest import CAPTURED_AT

pytestmark = pytest.mark.django_db


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def submit(client_user, django_capture_on_commit_callbacks):
    counter = iter(range(1_000_000))

    def submit(deployment, region: str, data: bytes) -> Case:
        with django_capture_on_commit_callbacks(execute=False):  # the worker is called below
            return case_submit(
                deployment=deployment, region_code=region, captured_at=CAPTURED_AT,
                image=SimpleUploadedFile("case.png", data, "image/png"),
                external_id=f"sim-{next(counter)}", submitted_by=client_user)
    return submit


def _predict_all() -> None:
    while predict_waiting(batch_size=32, wait_ms=0):
        pass


def test_the_guardrail_pauses_only_the_region_whose_images_turn_night_time(
        deployment, champion, trained_model, admin_user, submit):
    training = sorted((trained_model.path.parent / "digits" / "train").glob("*/*.png"))
    domain_thresholds_fit(deployment=deployment, images=[p.read_bytes() for p in training],
                          min_confidence=None)
    clean = [p.read_bytes() for p in trained_model.test_files]
    rng = random.Random(0)

    # Shadow stage: both regions send clean captures; this is each region's baseline.
    for i in range(40):
        submit(deployment, "north", clean[i])
        submit(deployment, "east", clean[40 + i])
    _predict_all()
    assert ReviewTask.objects.filter(reason="shadow").count() == 80

    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   reason="the model decides everywhere", confidence_threshold=0.0,
                   audit_rate=0.0, guardrails={"ood_min_cases": 30})
    # Then east's captures turn night-time; north's stay clean.
    for i in range(40):
        submit(deployment, "north", clean[80 + i])
        night = night_time(Image.open(io.BytesIO(clean[120 + i])).convert("RGB"), rng=rng)
        submit(deployment, "east", _png(night))
    _predict_all()

    east_tasks = ReviewTask.objects.filter(case__region__code="east", reason="out_of_domain")
    assert east_tasks.count() == 40  # the model decided none of the night-time captures
    assert Decision.objects.filter(case__region__code="north", source="model").count() == 40

    version = guardrails.guardrails_enforce(deployment=deployment)

    assert version is not None
    assert (version.author, version.kind, version.paused_cells) == (
        None, ChangeKind.GUARDRAIL, [["full", "east"]])
    # Every recent east case looked out of domain, against a clean shadow-stage baseline.
    assert re.search(r"region east under rule full: no answers yet \[inconclusive\] "
                     r"out-of-domain 40/40 = 1\.000 against a limit of 0\.\d{3}, evidence "
                     r"of exceeding it more than 1,000,000,000 \[fail\]$", version.reason), (
        version.reason)
    assert "region north" not in version.reason
    # From now on east goes to humans, north stays automated.
    east = submit(deployment, "east", clean[200])
    north = submit(deployment, "north", clean[201])
    _predict_all()
    assert ReviewTask.objects.get(case=east).reason == "paused"
    assert Decision.objects.get(case=north).source == "model"
