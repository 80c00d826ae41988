"""Inference in the worker: batched prediction, claims, every active version, the learner cache,
out-of-domain signals, failures, and the audited life of model versions."""

from __future__ import annotations

import hashlib
import io
import logging
import random
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
import torch
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, transaction
from django.test import override_settings
from django.utils import timezone
from PIL import Image
from torch import nn

from inference import predictor
from inference.demo_model import DIGIT_LABELS, low_resolution, night_time
from inference.models import InferenceClaim, ModelVersion, ModelVersionEvent, Prediction
from inference.ood import Limits, OodReason, ood_reasons
from inference.predictor import learner_load
from inference.services import (
    cases_claim,
    domain_thresholds_fit,
    model_version_promote,
    model_version_register,
    model_version_set_active,
)
from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.models import Case, CaseEvent, ReviewTask
from reviewplatform.pipeline import case_predict, predict_waiting
from reviewplatform.services import case_submit
from rollout.services import deployment_create, policy_publish
from tests.conftest import CAPTURED_AT


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def submit(deployment, client_user, make_upload, django_capture_on_commit_callbacks):
    """Submit an image (a file or encoded bytes) as a case; its queued job is captured, never
    run, so no broker is needed and the test decides when the worker's code runs."""
    counter = iter(range(10_000))

    def make(path: Path | None = None, *, content: bytes | None = None,
             region: str = "north") -> Case:
        with django_capture_on_commit_callbacks(execute=False):
            return case_submit(deployment=deployment, region_code=region,
                               image=make_upload(path, content=content),
                               captured_at=CAPTURED_AT, external_id=f"case-{next(counter)}",
                               submitted_by=client_user)
    return make


@pytest.fixture
def challenger(deployment, trained_model, admin_user) -> ModelVersion:
    return model_version_register(deployment=deployment, path=trained_model.path,
                                  name="challenger", actor=admin_user)


@pytest.fixture(scope="module")
def learn(trained_model):
    """The exported learner loaded straight from its file: the reference for every output."""
    return learner_load(str(trained_model.path))


@pytest.fixture
def held_out(digit_files) -> list[Path]:
    """Held-out digits, two of each label, in a fixed order."""
    return [path for _, paths in sorted(digit_files.items()) for path in sorted(paths)[:2]]


@pytest.fixture
def train_images(trained_model) -> list[bytes]:
    """The training split's PNGs (the data lives under <root>/{train,valid,test}/<label>/)."""
    root = trained_model.test_files[0].parent.parent.parent
    files = sorted((root / "train").glob("*/*.png"))
    assert len(files) > 500
    return [path.read_bytes() for path in files]


@pytest.fixture
def full_stage(deployment, admin_user):
    """A policy under which a confident, in-domain champion decides every case alone."""
    return policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                          confidence_threshold=0.0, audit_rate=0.0,
                          reason="test: the model decides everything it may")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def expected_probabilities(learn, path: Path) -> dict[str, float]:
    _, _, probs = learn.predict(path)
    return dict(zip(learn.dls.vocab, probs.tolist(), strict=True))


def assert_probabilities_equal(actual: dict[str, float], expected: dict[str, float]) -> None:
    assert set(actual) == set(expected)
    for label, probability in expected.items():
        assert actual[label] == pytest.approx(probability, abs=1e-4), label


def stale_time():
    return timezone.now() - timedelta(seconds=settings.PREDICTION_STALE_SECONDS + 5)


class Exploding(nn.Module):
    """A model that loads fine and raises on every forward pass (module level: picklable)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))  # exporting builds an optimizer: needs one

    def forward(self, x):
        raise RuntimeError("exploded on purpose")


def swap_artifact(version: ModelVersion, learner_file: Path) -> None:
    """Replace a registered artifact on disk, as a bad deploy would, with its new checksum."""
    data = learner_file.read_bytes()
    Path(version.artifact.path).write_bytes(data)
    ModelVersion.objects.filter(pk=version.pk).update(sha256=hashlib.sha256(data).hexdigest())


# --- batched prediction -------------------------------------------------------------------


def test_it_predicts_a_batch_exactly_like_fastai(champion, submit, held_out, learn):
    paths = held_out[::2][:8]
    cases = [submit(path) for path in paths]

    assert predict_waiting(batch_size=32, wait_ms=0) == 8

    for case, path in zip(cases, paths, strict=True):
        prediction = Prediction.objects.get(case=case)
        assert prediction.status == Prediction.Status.OK
        expected = expected_probabilities(learn, path)
        assert_probabilities_equal(prediction.probabilities, expected)
        assert prediction.label == max(expected, key=expected.get)
        assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW


def test_it_predicts_no_more_than_a_batch_oldest_first(champion, submit, held_out):
    cases = [submit(path) for path in held_out[:5]]

    assert predict_waiting(batch_size=3, wait_ms=0) == 3

    predicted = set(Prediction.objects.values_list("case_id", flat=True))
    assert predicted == {c.pk for c in sorted(cases, key=lambda c: c.pk)[:3]}
    waiting = Case.objects.filter(status=Case.Status.RECEIVED)
    assert set(waiting.values_list("id", flat=True)) == {c.pk for c in cases[3:]}


def test_it_predicts_nothing_when_nothing_waits(champion):
    assert predict_waiting(batch_size=32, wait_ms=0) == 0
    assert not Prediction.objects.exists()


# --- claims ---------------------------------------------------------------------------------


def test_it_never_gives_a_claimed_case_to_a_second_worker(submit, held_out):
    cases = [submit(path) for path in held_out[:7]]

    first = cases_claim(limit=5)
    second = cases_claim(limit=5)

    assert len(first) == 5
    assert first == sorted(first)
    assert not set(first) & set(second)
    assert set(first) | set(second) == {c.pk for c in cases}
    assert cases_claim(limit=5) == []


def test_it_takes_over_a_claim_whose_worker_died(submit, held_out):
    case = submit(held_out[0])
    (claimed,) = cases_claim(limit=5)
    assert claimed == case.pk
    assert InferenceClaim.objects.get(case=case).attempts == 1

    still_fresh = timezone.now() + timedelta(seconds=settings.PREDICTION_STALE_SECONDS - 5)
    assert cases_claim(limit=5, now=still_fresh) == []
    later = timezone.now() + timedelta(seconds=settings.PREDICTION_STALE_SECONDS + 5)
    assert cases_claim(limit=5, now=later) == [case.pk]

    claim = InferenceClaim.objects.get(case=case)
    assert claim.attempts == 2
    assert claim.claimed_at == later


@override_settings(INFERENCE_MAX_ATTEMPTS=2)
def test_it_gives_up_on_a_case_that_killed_its_workers(champion, challenger, full_stage,
                                                       submit, held_out):
    case = submit(held_out[0])
    # Two workers claimed it and died (out of memory, say): both claims went stale.
    InferenceClaim.objects.create(case=case, claimed_at=stale_time(), attempts=2)

    assert predict_waiting(batch_size=32, wait_ms=0) == 1

    predictions = Prediction.objects.filter(case=case)
    assert {p.model_version_id for p in predictions} == {champion.pk, challenger.pk}
    for prediction in predictions:
        assert prediction.status == Prediction.Status.FAILED
        assert prediction.error == "gave up after 2 attempts that did not finish"
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW
    assert ReviewTask.objects.get(case=case).reason == ReviewTask.Reason.MODEL_FAILED
    assert not InferenceClaim.objects.exists()


@override_settings(INFERENCE_MAX_ATTEMPTS=2)
def test_it_still_predicts_a_case_within_its_attempts(champion, submit, held_out):
    case = submit(held_out[0])
    InferenceClaim.objects.create(case=case, claimed_at=stale_time(), attempts=1)

    assert predict_waiting(batch_size=32, wait_ms=0) == 1

    assert Prediction.objects.get(case=case).status == Prediction.Status.OK


def test_it_releases_the_claims_after_predicting(champion, submit, held_out):
    for path in held_out[:4]:
        submit(path)

    predict_waiting(batch_size=32, wait_ms=0)

    assert Prediction.objects.count() == 4
    assert not InferenceClaim.objects.exists()


# --- every active version predicts every case -----------------------------------------------


def test_it_predicts_every_case_with_every_active_version(champion, challenger, admin_user,
                                                          submit, held_out, learn):
    before = [submit(path) for path in held_out[:3]]
    predict_waiting(batch_size=32, wait_ms=0)

    for case, path in zip(before, held_out[:3], strict=True):
        predictions = Prediction.objects.filter(case=case)
        assert {p.model_version_id for p in predictions} == {champion.pk, challenger.pk}
        for prediction in predictions:
            assert_probabilities_equal(prediction.probabilities,
                                       expected_probabilities(learn, path))

    model_version_set_active(version=challenger, active=False, actor=admin_user,
                             reason="test: retired")
    after = [submit(path) for path in held_out[3:6]]
    predict_waiting(batch_size=32, wait_ms=0)

    for case in after:
        assert list(Prediction.objects.filter(case=case)
                    .values_list("model_version_id", flat=True)) == [champion.pk]
    assert Prediction.objects.filter(model_version=challenger).count() == 3


# --- the learner cache ----------------------------------------------------------------------


def test_it_loads_a_learner_once_per_version_and_artifact(trained_model, tmp_path):
    import hashlib

    import torch

    # A second artifact: the same learner with one weight nudged, exported again.
    nudged = predictor.learner_load(str(trained_model.path))
    with torch.no_grad():
        next(nudged.model.parameters()).add_(1e-3)
    nudged.export(tmp_path / "nudged.pkl")
    files = {"sha-1": trained_model.path, "sha-2": tmp_path / "nudged.pkl"}
    sha = {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.items()}
    loads: list[int] = []

    def loader(version_id: int, name: str):
        def open_artifact():
            loads.append(version_id)  # twice per load: its bytes checked, then unpickled
            return files[name].open("rb")
        return open_artifact

    def learner(version_id: int, name: str):
        return predictor.learner_for(version_id=version_id, sha256=sha[name],
                                     open_artifact=loader(version_id, name))

    # Ids far beyond any row a test creates, so other tests' cached learners are not involved.
    a, b = 10**9 + 1, 10**9 + 2
    first = learner(a, "sha-1")
    again = learner(a, "sha-1")
    assert again is first
    assert loads == [a, a]

    changed = learner(a, "sha-2")
    assert changed is not first
    assert loads == [a] * 4

    other = learner(b, "sha-1")
    predictor.learners_forget_except([a])
    assert learner(a, "sha-2") is changed
    reloaded = learner(b, "sha-1")
    assert reloaded is not other
    assert loads == [a] * 4 + [b] * 4
    predictor.learners_forget_except([])


def test_it_refuses_to_load_an_artifact_that_is_not_the_registered_file(trained_model,
                                                                         tmp_path):
    import hashlib

    registered = hashlib.sha256(trained_model.path.read_bytes()).hexdigest()
    damaged = tmp_path / "damaged.pkl"
    data = bytearray(trained_model.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    damaged.write_bytes(bytes(data))

    with pytest.raises(predictor.ArtifactCorrupt, match=f"not the registered {registered[:12]}"):
        predictor.learner_for(version_id=10**9 + 3, sha256=registered,
                              open_artifact=lambda: damaged.open("rb"))


def count_loads(monkeypatch) -> list[int]:
    """Record every time a learner is read from its artifact (a spy around the real loader)."""
    loads: list[int] = []
    real = predictor.learner_load

    def counting(file):
        loads.append(1)
        return real(file)

    monkeypatch.setattr(predictor, "learner_load", counting)
    return loads


def test_it_keeps_a_loaded_learner_across_batches(champion, submit, held_out, monkeypatch):
    loads = count_loads(monkeypatch)

    for path in held_out[:3]:
        submit(path)
        assert predict_waiting(batch_size=32, wait_ms=0) == 1

    assert len(loads) == 1


def test_it_reloads_a_learner_whose_artifact_changed(champion, submit, held_out, monkeypatch,
                                                     tmp_path, learn):
    loads = count_loads(monkeypatch)
    submit(held_out[0])
    predict_waiting(batch_size=32, wait_ms=0)
    learn.export(tmp_path / "same-weights-new-file.pkl")
    swap_artifact(champion, tmp_path / "same-weights-new-file.pkl")

    submit(held_out[1])
    predict_waiting(batch_size=32, wait_ms=0)

    assert len(loads) == 2


def test_it_keeps_the_learners_of_other_deployments_loaded(champion, deployment, admin_user,
                                                           client_user, trained_model,
                                                           make_upload, held_out, monkeypatch,
                                                           django_capture_on_commit_callbacks):
    """A worker serves every deployment: a batch of one must not evict another's models
    ("each model is loaded once per worker process and reloaded only when the active
    versions change")."""
    other = deployment_create(slug="digits-2", name="More digits", labels=DIGIT_LABELS,
                              regions=[("north", "North", "Europe/Oslo")], actor=admin_user)
    model_version_register(deployment=other, path=trained_model.path, name="champion",
                           champion=True, actor=admin_user)
    loads = count_loads(monkeypatch)

    for n, target in enumerate([deployment, other, deployment, other]):
        with django_capture_on_commit_callbacks(execute=False):
            case_submit(deployment=target, region_code="north", image=make_upload(held_out[n]),
                        captured_at=CAPTURED_AT, external_id=f"case-{n}",
                        submitted_by=client_user)
        assert predict_waiting(batch_size=32, wait_ms=0) == 1

    assert Prediction.objects.filter(status=Prediction.Status.OK).count() == 4
    assert len(loads) == 2, f"{len(loads)} loads for 2 model versions"


# --- out of domain --------------------------------------------------------------------------

IN_DOMAIN = {"brightness": 200.0, "contrast": 60.0, "width": 32, "height": 32,
             "confidence": 0.95, "entropy": 0.2}


@pytest.mark.parametrize(("limits", "changes", "code", "text"), [
    (Limits(min_brightness=100), {"brightness": 40.0}, OodReason.TOO_DARK,
     "dark image (mean brightness 40 < 100)"),
    (Limits(max_brightness=240), {"brightness": 250.0}, OodReason.TOO_BRIGHT,
     "overexposed image (mean brightness 250 > 240)"),
    (Limits(min_contrast=20), {"contrast": 5.0}, OodReason.LOW_CONTRAST,
     "low contrast (5 < 20)"),
    (Limits(min_pixels=512), {"width": 14, "height": 14}, OodReason.LOW_RESOLUTION,
     "low resolution (14x14 = 196 px < 512 px)"),
    (Limits(min_confidence=0.5), {"confidence": 0.3}, OodReason.UNCERTAIN,
     "uncertain model (top probability 0.30 < 0.50)"),
    (Limits(max_entropy=1.0), {"entropy": 1.8}, OodReason.SPREAD_OUT,
     "spread-out prediction (entropy 1.80 > 1.00 nats)"),
])
def test_it_names_each_limit_an_input_breaks(limits, changes, code, text):
    assert ood_reasons(**IN_DOMAIN, limits=limits) == []

    (reason,) = ood_reasons(**{**IN_DOMAIN, **changes}, limits=limits)

    assert reason == {"code": code, "text": text}


def test_it_checks_nothing_without_limits():
    assert ood_reasons(brightness=0.0, contrast=0.0, width=1, height=1, confidence=0.01,
                       entropy=9.0, limits=Limits()) == []


def test_it_lists_every_broken_limit():
    limits = Limits(min_brightness=100, min_contrast=20, min_pixels=512, min_confidence=0.5)

    reasons = ood_reasons(brightness=30.0, contrast=5.0, width=10, height=10, confidence=0.2,
                          entropy=2.0, limits=limits)

    assert len(reasons) == 4


def test_it_does_not_judge_confidence_of_a_failed_prediction():
    limits = Limits(min_confidence=0.5, max_entropy=1.0)

    assert ood_reasons(**{**IN_DOMAIN, "confidence": None, "entropy": None}, limits=limits) == []


def input_reasons(image: bytes, thresholds) -> list[str]:
    """The codes of the input checks alone (no model output): brightness, contrast, pixels."""
    stats = predictor.input_stats(image)
    limits = Limits(min_brightness=thresholds.min_brightness,
                    max_brightness=thresholds.max_brightness,
                    min_contrast=thresholds.min_contrast, min_pixels=thresholds.min_pixels)
    return [reason["code"] for reason in ood_reasons(
        brightness=stats.brightness, contrast=stats.contrast, width=stats.width,
        height=stats.height, confidence=None, entropy=None, limits=limits)]


def test_it_fits_limits_that_pass_clean_digits_and_flag_shifted_ones(deployment, train_images,
                                                                     trained_model):
    thresholds = domain_thresholds_fit(deployment=deployment, images=train_images)

    assert thresholds.min_confidence == 0.5
    clean = [path.read_bytes() for path in trained_model.test_files]
    flagged = [reasons for image in clean if (reasons := input_reasons(image, thresholds))]
    assert flagged == []
    rng = random.Random(0)
    for path in sorted(trained_model.test_files)[:20]:
        image = Image.open(path)
        dark = input_reasons(png(night_time(image, rng=rng)), thresholds)
        assert OodReason.TOO_DARK in dark, dark
        small = input_reasons(png(low_resolution(image)), thresholds)
        assert OodReason.LOW_RESOLUTION in small, small


def test_it_refuses_to_fit_limits_on_too_few_images(deployment, train_images):
    with pytest.raises(ServiceError):
        domain_thresholds_fit(deployment=deployment, images=train_images[:9])


def confident_clean_path(learn, paths: list[Path]) -> Path:
    return max(paths, key=lambda p: max(expected_probabilities(learn, p).values()))


def test_it_sends_a_night_time_case_to_humans_and_says_why(champion, deployment, full_stage,
                                                           train_images, submit, held_out,
                                                           learn):
    domain_thresholds_fit(deployment=deployment, images=train_images)
    clean_path = confident_clean_path(learn, held_out)
    night_image = night_time(Image.open(held_out[1]), rng=random.Random(0))
    night = submit(content=png(night_image))
    clean = submit(clean_path)

    assert predict_waiting(batch_size=32, wait_ms=0) == 2

    flagged = Prediction.objects.get(case=night)
    assert flagged.status == Prediction.Status.OK
    assert flagged.out_of_domain
    assert OodReason.TOO_DARK in [reason["code"] for reason in flagged.ood_reasons]
    stats = predictor.input_stats(png(night_image))
    assert flagged.brightness == pytest.approx(stats.brightness)
    assert flagged.contrast == pytest.approx(stats.contrast)
    assert flagged.pixels == 32 * 32
    assert Case.objects.get(pk=night.pk).status == Case.Status.IN_REVIEW
    assert not hasattr(Case.objects.get(pk=night.pk), "decision")
    assert ReviewTask.objects.get(case=night).reason == ReviewTask.Reason.OUT_OF_DOMAIN

    fine = Prediction.objects.get(case=clean)
    assert not fine.out_of_domain
    assert fine.ood_reasons == []
    clean = Case.objects.get(pk=clean.pk)
    assert clean.status == Case.Status.DECIDED
    assert clean.decision.source == "model"
    assert not ReviewTask.objects.filter(case=clean).exists()


def test_it_flags_a_low_resolution_case(champion, deployment, train_images, submit,
                                        held_out):
    domain_thresholds_fit(deployment=deployment, images=train_images)
    case = submit(content=png(low_resolution(Image.open(held_out[0]))))

    case_predict(case_id=case.pk)

    prediction = Prediction.objects.get(case=case)
    assert prediction.out_of_domain
    assert prediction.pixels == 14 * 14
    assert OodReason.LOW_RESOLUTION in [reason["code"] for reason in prediction.ood_reasons]


# --- failures -------------------------------------------------------------------------------


def test_it_records_a_model_that_raises_and_sends_the_case_to_humans(
        champion, challenger, full_stage, submit, held_out, learn, tmp_path):
    exploding = learner_load(str(champion.artifact.path))
    exploding.model = Exploding()
    exploding.export(tmp_path / "exploding.pkl")
    swap_artifact(champion, tmp_path / "exploding.pkl")
    case = submit(held_out[0])

    assert predict_waiting(batch_size=32, wait_ms=0) == 1

    failed = Prediction.objects.get(case=case, model_version=champion)
    assert failed.status == Prediction.Status.FAILED
    assert failed.error == "RuntimeError: exploded on purpose"
    assert failed.label == "" and failed.confidence is None
    working = Prediction.objects.get(case=case, model_version=challenger)
    assert working.status == Prediction.Status.OK
    assert_probabilities_equal(working.probabilities, expected_probabilities(learn, held_out[0]))
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW
    assert ReviewTask.objects.get(case=case).reason == ReviewTask.Reason.MODEL_FAILED


def test_it_records_a_time_out_and_still_routes_the_case(champion, full_stage, submit,
                                                         held_out, monkeypatch):
    def too_slow(learn, images):
        # Stands in for Celery's soft time limit: the signal that raises this exception in
        # the middle of a forward pass is delivered only by a prefork worker.
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(predictor, "predict_images", too_slow)
    case = submit(held_out[0])

    assert predict_waiting(batch_size=32, wait_ms=0) == 1

    prediction = Prediction.objects.get(case=case)
    assert prediction.status == Prediction.Status.FAILED
    assert prediction.error == f"timed out after {settings.INFERENCE_TIME_LIMIT}s"
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW
    assert ReviewTask.objects.get(case=case).reason == ReviewTask.Reason.MODEL_FAILED
    assert not InferenceClaim.objects.exists()


def test_it_creates_no_duplicate_on_a_redelivered_job(champion, challenger, submit, held_out):
    cases = [submit(path) for path in held_out[:3]]
    predict_waiting(batch_size=32, wait_ms=0)
    first = sorted(Prediction.objects.values_list("id", "case_id", "model_version_id"))

    assert predict_waiting(batch_size=32, wait_ms=0) == 0
    for case in cases:
        case_predict(case_id=case.pk)

    assert sorted(Prediction.objects.values_list("id", "case_id", "model_version_id")) == first
    assert len(first) == 6
    assert ReviewTask.objects.count() == 3


def test_it_finishes_a_case_whose_worker_died_after_storing_predictions(
        champion, challenger, submit, held_out):
    case = submit(held_out[0])
    case_predict(case_id=case.pk)
    stored = sorted(Prediction.objects.filter(case=case).values_list("id", flat=True))
    # The worker died after storing its predictions, before routing and releasing the claim
    # (routing's task and event are written together, so neither exists).
    ReviewTask.objects.filter(case=case).delete()
    CaseEvent.objects.filter(case=case).delete()
    Case.objects.filter(pk=case.pk).update(status=Case.Status.RECEIVED)
    InferenceClaim.objects.create(case=case, claimed_at=stale_time())

    assert predict_waiting(batch_size=32, wait_ms=0) == 1

    assert sorted(Prediction.objects.filter(case=case).values_list("id", flat=True)) == stored
    assert ReviewTask.objects.filter(case=case).count() == 1
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW


def test_the_database_refuses_a_second_prediction_by_the_same_version(champion, submit,
                                                                       held_out):
    case = submit(held_out[0])
    case_predict(case_id=case.pk)

    with pytest.raises(IntegrityError), transaction.atomic():
        Prediction.objects.create(case=case, model_version=champion,
                                  status=Prediction.Status.FAILED, error="duplicate")


# --- model versions -------------------------------------------------------------------------


def test_it_writes_a_registered_event(champion, admin_user):
    (event,) = ModelVersionEvent.objects.filter(model_version=champion)
    assert event.action == ModelVersionEvent.Action.REGISTERED
    assert event.actor == admin_user
    assert champion.sha256 in event.reason


def test_it_needs_a_reason_to_promote(champion, challenger, admin_user):
    with pytest.raises(ServiceError) as refused:
        model_version_promote(version=challenger, actor=admin_user, reason="  ")

    assert refused.value.field == "reason"
    assert ModelVersion.objects.get(is_champion=True) == champion
    assert not ModelVersionEvent.objects.exclude(
        action=ModelVersionEvent.Action.REGISTERED).exists()


def test_it_promotes_a_challenger_and_keeps_the_old_champion_as_challenger(
        champion, challenger, admin_user, reviewer):
    model_version_promote(version=challenger, actor=admin_user,
                          reason="agrees more often with reviewers")

    champion.refresh_from_db()
    challenger.refresh_from_db()
    assert challenger.is_champion and challenger.is_active
    assert not champion.is_champion and champion.is_active
    promoted = ModelVersionEvent.objects.get(model_version=challenger,
                                             action=ModelVersionEvent.Action.PROMOTED)
    assert (promoted.actor, promoted.reason) == (admin_user, "agrees more often with reviewers")
    demoted = ModelVersionEvent.objects.get(model_version=champion,
                                            action=ModelVersionEvent.Action.DEMOTED)
    assert demoted.actor == admin_user
    assert "agrees more often with reviewers" in demoted.reason


def test_it_refuses_to_promote_the_champion(champion, challenger, admin_user):
    with pytest.raises(Conflict):
        model_version_promote(version=champion, actor=admin_user, reason="again")

    assert ModelVersion.objects.get(is_champion=True) == champion
    assert not ModelVersionEvent.objects.filter(action="promoted").exists()


def test_it_refuses_to_retire_the_champion(champion, admin_user):
    with pytest.raises(Conflict):
        model_version_set_active(version=champion, active=False, actor=admin_user,
                                 reason="test")

    champion.refresh_from_db()
    assert champion.is_active and champion.is_champion
    assert not ModelVersionEvent.objects.filter(action="retired").exists()


def test_it_retires_and_reactivates_a_challenger_with_an_audit_trail(challenger, champion,
                                                                     admin_user):
    model_version_set_active(version=challenger, active=False, actor=admin_user,
                             reason="too slow")
    assert not ModelVersion.objects.get(pk=challenger.pk).is_active
    model_version_set_active(version=challenger, active=True, actor=admin_user,
                             reason="fixed")
    assert ModelVersion.objects.get(pk=challenger.pk).is_active

    events = ModelVersionEvent.objects.filter(model_version=challenger).order_by("id")
    assert [(e.action, e.reason) for e in events] == [
        ("registered", events[0].reason), ("retired", "too slow"), ("reactivated", "fixed")]


def test_the_database_refuses_two_champions(champion, challenger):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=challenger.pk).update(is_champion=True)

    assert list(ModelVersion.objects.filter(is_champion=True)) == [champion]


def test_the_database_refuses_a_retired_champion(champion):
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=champion.pk).update(is_active=False)


# --- device ---------------------------------------------------------------------------------


@override_settings(INFERENCE_DEVICE="cuda")
def test_it_falls_back_to_the_cpu_when_cuda_is_asked_for_but_absent(trained_model, learn,
                                                                    held_out, caplog,
                                                                    monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU
    with caplog.at_level(logging.WARNING, logger="inference.predictor"):
        assert predictor.device_name() == "cpu"
    assert any("no GPU" in record.getMessage() for record in caplog.records)

    loaded = learner_load(str(trained_model.path))
    (output,) = predictor.predict_images(loaded, [held_out[0].read_bytes()])
    assert_probabilities_equal(output.probabilities, expected_probabilities(learn, held_out[0]))


@override_settings(INFERENCE_DEVICE="cpu")
def test_it_predicts_on_the_cpu_by_default(caplog):
    with caplog.at_level(logging.WARNING, logger="inference.predictor"):
        assert predictor.device_name() == "cpu"
    assert not caplog.records


# --- statements per batch -------------------------------------------------------------------
# Every statement is a round trip, made for every batch: claim (a locking read and one upsert),
# predict (the cases, the active versions, one insert per version), route (lock the cases, the
# policies, the review tasks, the case events, the statuses) and release. Pinned so that they
# do not creep back.


def test_it_predicts_and_routes_a_batch_in_fifteen_statements(champion, submit, held_out,
                                                              django_assert_num_queries):
    cases = [submit(path) for path in held_out[:8]]

    with django_assert_num_queries(15):
        assert predict_waiting(batch_size=32, wait_ms=0) == 8

    assert Prediction.objects.filter(status=Prediction.Status.OK).count() == 8
    assert set(Case.objects.values_list("status", flat=True)) == {Case.Status.IN_REVIEW}
    assert ReviewTask.objects.filter(case__in=cases).count() == 8
    assert not InferenceClaim.objects.exists()


def test_it_adds_one_statement_per_other_active_version(champion, challenger, submit,
                                                        held_out, django_assert_num_queries):
    for path in held_out[:8]:
        submit(path)

    with django_assert_num_queries(16):
        assert predict_waiting(batch_size=32, wait_ms=0) == 8

    assert Prediction.objects.filter(status=Prediction.Status.OK).count() == 16


def test_a_batchs_job_queues_its_cases_again_when_the_drain_runs_out_of_time(
        submit, monkeypatch):
    from reviewplatform import tasks

    cases = [submit(), submit()]
    ids = [case.pk for case in cases]
    monkeypatch.setattr(tasks, "DRAIN_SECONDS", 0)
    monkeypatch.setattr(tasks.pipeline, "predict_waiting", lambda: 1)  # never done in time
    with mock.patch.object(tasks.predict_cases, "delay") as delay:
        tasks.predict_cases(ids)
    delay.assert_called_once_with(ids)

    # Drained in time: the cases still waiting are another worker's (claimed), not queued.
    monkeypatch.setattr(tasks.pipeline, "predict_waiting", lambda: 0)
    with mock.patch.object(tasks.predict_cases, "delay") as delay:
        tasks.predict_cases(ids)
    delay.assert_not_called()


def test_a_burst_of_submits_queues_one_job_which_predicts_every_case(
        champion, deployment, client_user, make_upload, held_out, settings,
        django_capture_on_commit_callbacks):
    from reviewplatform import tasks
    from reviewplatform.intake import case_intake

    settings.INFERENCE_BATCH_WAIT_MS = 0

    def intake(path: Path, external_id: str) -> Case:
        with django_capture_on_commit_callbacks(execute=True):
            return case_intake(deployment=deployment, region_code="north",
                               image=make_upload(path), captured_at=CAPTURED_AT,
                               external_id=external_id, submitted_by=client_user)

    with mock.patch.object(tasks.predict_waiting, "apply_async") as queued:
        burst = [intake(path, f"burst-{i}") for i, path in enumerate(held_out[:6])]
    # One job, queued with the quick retry (a broker that is down leaves it to the sweep).
    queued.assert_called_once_with(retry_policy=tasks.QUEUE_RETRY_POLICY)

    tasks.predict_waiting()  # the one job, run by the worker

    assert not Case.objects.filter(pk__in=[c.pk for c in burst],
                                   status=Case.Status.RECEIVED).exists()
    assert Prediction.objects.filter(case__in=burst, status=Prediction.Status.OK).count() == 6
    # The job began: a case submitted from now on queues the next one.
    with mock.patch.object(tasks.predict_waiting, "apply_async") as queued:
        later = intake(held_out[6], "later")
    queued.assert_called_once_with(retry_policy=tasks.QUEUE_RETRY_POLICY)
    tasks.predict_waiting()
    assert Case.objects.get(pk=later.pk).status != Case.Status.RECEIVED


def test_a_waiting_job_queues_another_when_the_drain_runs_out_of_time(db, monkeypatch):
    from reviewplatform import tasks

    monkeypatch.setattr(tasks, "DRAIN_SECONDS", 0)
    monkeypatch.setattr(tasks.pipeline, "predict_waiting", lambda: 1)  # never done in time
    with mock.patch.object(tasks.predict_waiting, "delay") as delay:
        tasks.predict_waiting()
    delay.assert_called_once_with()

    monkeypatch.setattr(tasks.pipeline, "predict_waiting", lambda: 0)
    with mock.patch.object(tasks.predict_waiting, "delay") as delay:
        tasks.predict_waiting()
    delay.assert_not_called()
