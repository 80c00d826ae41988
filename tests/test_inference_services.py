"""Inference: registering model versions, predicting cases with a real fastai learner."""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.utils import timezone

from inference.models import ModelVersion, Prediction
from inference.predictor import learner_load
from inference.services import model_version_register
from reviewplatform import tasks
from reviewplatform.errors import ServiceError
from reviewplatform.models import Case, CaseEvent, ReviewTask
from reviewplatform.pipeline import case_predict
from reviewplatform.services import case_submit
from rollout.services import deployment_create, policy_publish
from tests.conftest import CAPTURED_AT


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def submit(deployment, client_user, make_upload, django_capture_on_commit_callbacks):
    """Submit an image file as a case; its queued prediction job is captured, never run."""
    counter = iter(range(10_000))

    def make(path: Path, *, region: str = "north") -> Case:
        with django_capture_on_commit_callbacks(execute=False):
            return case_submit(deployment=deployment, region_code=region,
                               image=make_upload(path), captured_at=CAPTURED_AT,
                               external_id=f"{path.stem}-{next(counter)}",
                               submitted_by=client_user)
    return make


@pytest.fixture
def challenger(deployment, trained_model, admin_user) -> ModelVersion:
    return model_version_register(deployment=deployment, path=trained_model.path,
                                  name="challenger", actor=admin_user)


@pytest.fixture(scope="module")
def learn(trained_model):
    """The same exported learner, loaded straight from its file, as the reference."""
    return learner_load(str(trained_model.path))


def corrupt(version: ModelVersion) -> None:
    """Replace a registered artifact with garbage (as a bad deploy or a disk fault would)."""
    garbage = b"\x00garbage, not a pickle\xff" * 64
    Path(version.artifact.path).write_bytes(garbage)
    ModelVersion.objects.filter(pk=version.pk).update(
        sha256=hashlib.sha256(garbage).hexdigest())


def test_it_predicts_a_case_like_fastai_does(champion, challenger, submit, digit_files, learn):
    path = digit_files["4"][0]
    case = submit(path)

    case_predict(case_id=case.pk)

    predictions = {p.model_version_id: p for p in Prediction.objects.filter(case=case)}
    assert set(predictions) == {champion.pk, challenger.pk}
    _, _, expected = learn.predict(path)
    expected = dict(zip(learn.dls.vocab, expected.tolist(), strict=True))
    for prediction in predictions.values():
        assert prediction.status == Prediction.Status.OK
        assert prediction.error == ""
        assert set(prediction.probabilities) == set(expected)
        for label, probability in expected.items():
            assert prediction.probabilities[label] == pytest.approx(probability, abs=1e-4)
        best = max(prediction.probabilities, key=prediction.probabilities.get)
        assert prediction.label == best
        assert prediction.confidence == pytest.approx(max(expected.values()), abs=1e-4)
        assert sum(prediction.probabilities.values()) == pytest.approx(1, abs=1e-4)
        assert prediction.latency_ms > 0
        assert prediction.entropy == pytest.approx(
            -sum(p * math.log(p) for p in expected.values() if p > 0), abs=1e-3)


def test_it_routes_a_predicted_case_to_the_queue_in_shadow_stage(champion, submit,
                                                                 digit_files):
    case = submit(digit_files["2"][0])

    case_predict(case_id=case.pk)

    case.refresh_from_db()
    assert case.status == Case.Status.IN_REVIEW
    (task,) = ReviewTask.objects.filter(case=case)
    assert task.reason == ReviewTask.Reason.SHADOW
    assert task.status == ReviewTask.Status.OPEN
    assert not hasattr(Case.objects.get(pk=case.pk), "decision")


def test_it_predicts_a_case_once_however_often_it_is_asked(champion, challenger, submit,
                                                           digit_files):
    case = submit(digit_files["5"][0])
    case_predict(case_id=case.pk)
    first = list(Prediction.objects.filter(case=case).order_by("id").values_list("id", "label"))

    case_predict(case_id=case.pk)

    assert list(Prediction.objects.filter(case=case).order_by("id")
                .values_list("id", "label")) == first
    assert len(first) == 2
    assert ReviewTask.objects.filter(case=case).count() == 1


def test_it_completes_a_case_whose_job_died_between_predicting_and_routing(
        champion, challenger, submit, digit_files):
    case = submit(digit_files["6"][0])
    ModelVersion.objects.filter(pk=challenger.pk).update(is_active=False)
    case_predict(case_id=case.pk)
    champion_prediction = Prediction.objects.get(case=case)
    # The worker died after storing the champion's prediction, before routing (and so before
    # routing's task and event).
    ReviewTask.objects.filter(case=case).delete()
    CaseEvent.objects.filter(case=case).delete()
    Case.objects.filter(pk=case.pk).update(status=Case.Status.RECEIVED)
    ModelVersion.objects.filter(pk=challenger.pk).update(is_active=True)

    case_predict(case_id=case.pk)

    assert Prediction.objects.get(case=case, model_version=champion) == champion_prediction
    assert Prediction.objects.filter(case=case, model_version=challenger).count() == 1
    assert ReviewTask.objects.filter(case=case).count() == 1
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW


def test_it_records_a_broken_model_as_failed_and_still_queues_the_case(
        champion, challenger, submit, digit_files):
    corrupt(challenger)
    case = submit(digit_files["7"][0])

    case_predict(case_id=case.pk)

    failed = Prediction.objects.get(case=case, model_version=challenger)
    assert failed.status == Prediction.Status.FAILED
    assert failed.error == "UnpicklingError: invalid load key, '\\x00'."
    assert failed.label == ""
    assert failed.confidence is None
    assert Prediction.objects.get(case=case, model_version=champion).status == "ok"
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW
    assert ReviewTask.objects.get(case=case).reason == ReviewTask.Reason.SHADOW


def test_it_sends_a_case_to_humans_when_the_champion_fails(champion, deployment, admin_user,
                                                           submit, digit_files):
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   confidence_threshold=0.0, reason="test: the model decides everything")
    corrupt(champion)
    case = submit(digit_files["1"][0])

    case_predict(case_id=case.pk)

    assert Prediction.objects.get(case=case).status == Prediction.Status.FAILED
    assert Case.objects.get(pk=case.pk).status == Case.Status.IN_REVIEW
    assert ReviewTask.objects.get(case=case).reason == ReviewTask.Reason.MODEL_FAILED


def test_it_lets_a_confident_champion_decide_in_full_stage(champion, deployment, admin_user,
                                                           submit, digit_files):
    # No audit share: which cases an audit samples depends on their ids (sticky).
    policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                   confidence_threshold=0.0, audit_rate=0.0,
                   reason="test: the model decides everything")
    case = submit(digit_files["1"][0])

    case_predict(case_id=case.pk)

    case = Case.objects.get(pk=case.pk)
    prediction = Prediction.objects.get(case=case)
    assert case.status == Case.Status.DECIDED
    assert case.decision.source == "model"
    assert case.decision.label == prediction.label
    assert case.decision.prediction == prediction
    assert not ReviewTask.objects.filter(case=case).exists()


def test_it_gets_most_held_out_digits_right(champion, submit, digit_files):
    images = [(label, path) for label, paths in sorted(digit_files.items())
              for path in sorted(paths)[:2]]
    assert len(images) == 20
    cases = [(label, submit(path)) for label, path in images]

    for _, case in cases:
        case_predict(case_id=case.pk)

    right = sum(Prediction.objects.get(case=case).label == label for label, case in cases)
    assert right >= 16, f"{right} of 20 right"


def test_it_refuses_a_learner_whose_labels_differ_from_the_deployment(trained_model,
                                                                      admin_user):
    pets = deployment_create(slug="pets", name="Pets", labels=["cat", "dog"],
                             regions=[("north", "North", "Europe/Oslo")], actor=admin_user)

    with pytest.raises(ServiceError) as refused:
        model_version_register(deployment=pets, path=trained_model.path, name="digits",
                               champion=True, actor=admin_user)

    assert refused.value.field == "labels"
    message = refused.value.message
    assert "missing ['cat', 'dog']" in message
    assert "unexpected ['0', '1'" in message
    assert not ModelVersion.objects.exists()
    assert not (Path(settings.MEDIA_ROOT) / "models").exists()


def test_it_refuses_a_file_that_is_not_a_learner(deployment, admin_user, tmp_path):
    path = tmp_path / "export.pkl"
    path.write_bytes(b"this is not a pickle")

    with pytest.raises(ServiceError) as refused:
        model_version_register(deployment=deployment, path=path, name="bad", actor=admin_user)

    assert refused.value.field == "path"
    assert "not a loadable fastai learner" in refused.value.message
    assert not ModelVersion.objects.exists()
    assert not (Path(settings.MEDIA_ROOT) / "models").exists()


def test_it_refuses_a_second_version_with_the_same_name(champion, deployment, trained_model):
    with pytest.raises(ServiceError) as refused:
        model_version_register(deployment=deployment, path=trained_model.path, name="champion")

    assert refused.value.status_code == 409
    assert ModelVersion.objects.count() == 1


def test_it_stores_the_artifact_with_its_checksum_and_labels(champion, trained_model,
                                                             deployment):
    expected = hashlib.sha256(trained_model.path.read_bytes()).hexdigest()

    assert champion.sha256 == expected
    assert hashlib.sha256(Path(champion.artifact.path).read_bytes()).hexdigest() == expected
    assert sorted(champion.labels) == sorted(deployment.labels)
    assert champion.is_champion and champion.is_active


def test_it_demotes_the_old_champion_when_a_new_one_is_registered(champion, deployment,
                                                                  trained_model, admin_user):
    newer = model_version_register(deployment=deployment, path=trained_model.path,
                                   name="champion-2", champion=True, actor=admin_user)

    champion.refresh_from_db()
    assert newer.is_champion
    assert not champion.is_champion
    assert champion.is_active
    assert list(deployment.model_versions.filter(is_champion=True)) == [newer]


def test_it_requeues_a_case_whose_prediction_job_was_lost(submit, digit_files):
    stale = submit(digit_files["3"][0])
    submit(digit_files["3"][1])  # fresh: submitted just now
    long_ago = timezone.now() - timedelta(seconds=settings.PREDICTION_STALE_SECONDS + 5)
    Case.objects.filter(pk=stale.pk).update(updated_at=long_ago)

    # The only mock in these tests: it stands in for the broker, recording which case ids
    # would have been queued instead of sending them to Redis.
    with mock.patch("reviewplatform.tasks.predict_case.delay") as delay:
        count = tasks.cases_requeue_stale()

    assert count == 1
    delay.assert_called_once_with(stale.pk)
    assert Case.objects.get(pk=stale.pk).updated_at > long_ago


def test_it_does_not_requeue_a_case_it_just_requeued(submit, digit_files):
    stale = submit(digit_files["3"][0])
    long_ago = timezone.now() - timedelta(seconds=settings.PREDICTION_STALE_SECONDS + 5)
    Case.objects.filter(pk=stale.pk).update(updated_at=long_ago)

    # The only mock in these tests: it stands in for the broker (see above).
    with mock.patch("reviewplatform.tasks.predict_case.delay") as delay:
        tasks.cases_requeue_stale()
        tasks.cases_requeue_stale()

    assert [c.args for c in delay.call_args_list] == [(stale.pk,)]


def test_it_does_not_requeue_a_case_past_the_received_state(champion, submit, digit_files):
    routed = submit(digit_files["3"][0])
    case_predict(case_id=routed.pk)
    long_ago = timezone.now() - timedelta(seconds=settings.PREDICTION_STALE_SECONDS + 5)
    Case.objects.filter(pk=routed.pk).update(updated_at=long_ago)

    # The only mock in these tests: it stands in for the broker (see above).
    with mock.patch("reviewplatform.tasks.predict_case.delay") as delay:
        assert tasks.cases_requeue_stale() == 0

    delay.assert_not_called()
