"""Shared fixtures for the review-queue tests: queued cases, stored champion answers, seniors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile

from inference import predictor
from inference.models import ModelVersion, Prediction
from review.services import review_task_create
from reviewplatform.models import Case, Deployment, ReviewTask
from rollout.selectors import policy_current
from tests.conftest import CAPTURED_AT, png_bytes

__all__ = ["enqueue", "fake_learner", "make_case", "media_root", "received", "senior",
           "stored_champion", "third_reviewer"]


@pytest.fixture
def senior(db) -> User:
    user = User.objects.create_user(username="senior", password="senior-password")
    user.groups.set(Group.objects.filter(name="senior reviewer"))
    return user


@pytest.fixture
def third_reviewer(db) -> User:
    user = User.objects.create_user(username="third-reviewer", password="x")
    user.groups.set(Group.objects.filter(name="reviewer"))
    return user


@pytest.fixture
def stored_champion(deployment) -> ModelVersion:
    """A champion row whose answers are stored directly (the model itself is not run)."""
    return ModelVersion.objects.create(deployment=deployment, name="champion",
                                       artifact="models/champion.pkl", sha256="0" * 64,
                                       labels=deployment.labels, is_champion=True)


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def make_case(deployment, client_user, media_root) -> Callable[..., Case]:
    """A stored case with a real image, in review (no prediction job: rows written directly)."""
    counter = iter(range(100_000))

    def make(*, region: str = "north", deployment: Deployment = deployment,
             captured_at=CAPTURED_AT) -> Case:
        n = next(counter)
        case = Case(deployment=deployment, region=deployment.regions.get(code=region),
                    external_id=f"q-{n}", image_sha256="0" * 64, width=32, height=32,
                    captured_at=captured_at, submitted_by=client_user,
                    status=Case.Status.IN_REVIEW)
        case.image.save(f"q-{n}.png", ContentFile(png_bytes(color=f"#{n % 256:02x}3060")),
                        save=False)
        case.width = case.height = 32
        case.save()
        return case
    return make


@pytest.fixture
def enqueue(make_case, stored_champion) -> Callable[..., ReviewTask]:
    """Queue a new case for review; `says`/`confidence` store the champion's answer first."""
    def make(*, reason: str = ReviewTask.Reason.SHADOW, says: str | None = None,
             confidence: float = 0.97, ood_reasons: list[dict[str, str]] | None = None,
             **case_kwargs) -> ReviewTask:
        case = make_case(**case_kwargs)
        if says is not None:
            Prediction.objects.create(case=case, model_version=stored_champion, status="ok",
                                      label=says, confidence=confidence,
                                      probabilities={says: confidence},
                                      out_of_domain=bool(ood_reasons),
                                      ood_reasons=ood_reasons or [])
        return review_task_create(case=case, reason=reason,
                                  policy_version=policy_current(deployment_id=case.deployment_id))
    return make


@pytest.fixture
def received(deployment, client_user, media_root) -> Callable[..., Case]:
    """A stored case with a real image, waiting for predictions (no prediction job)."""
    counter = iter(range(100_000))

    def make(*, region: str = "north", deployment: Deployment = deployment) -> Case:
        n = next(counter)
        case = Case(deployment=deployment, region=deployment.regions.get(code=region),
                    external_id=f"w-{n}", image_sha256="0" * 64, width=32, height=32,
                    captured_at=CAPTURED_AT, submitted_by=client_user)
        case.image.save(f"w-{n}.png", ContentFile(png_bytes()), save=False)
        case.width = case.height = 32
        case.save()
        return case
    return make


@pytest.fixture
def fake_learner(monkeypatch, stored_champion) -> list[int]:
    """Every model answers "7" with confidence 0.99, without loading a learner; returns the
    size of each forward pass."""
    batches: list[int] = []

    def predict_images(learn: Any, images: list[bytes]) -> list[predictor.Output]:
        batches.append(len(images))
        return [predictor.Output(label="7", confidence=0.99, probabilities={"7": 0.99},
                                 entropy=0.05, latency_ms=1.0) for _ in images]

    monkeypatch.setattr(predictor, "learner_for", lambda **kwargs: object())
    monkeypatch.setattr(predictor, "predict_images", predict_images)
    return batches
