"""Out-of-domain detection on the model's own features: taken from the forward pass that
predicts, stored with every prediction, compared with the model version's reference set by a
detector calibrated on held-out reference images; a case past its threshold goes to reviewers."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from inference import detector as detector_module
from inference import predictor
from inference.demo_model import low_resolution, night_time
from inference.detector import KEEP, MIN_IMAGES, detector_for
from inference.models import Prediction, ReferenceSet
from inference.ood import FeatureDistance, Limits, OodReason, ood_reasons
from inference.reference import (
    ReferenceImageIn,
    reference_detector_fit,
    reference_detectors_fit,
    reference_set_store,
)
from inference.services import domain_thresholds_fit
from reviewplatform.errors import ServiceError
from reviewplatform.models import Case, ReviewTask
from reviewplatform.pipeline import predict_waiting
from tests.test_inference_batching import (  # noqa: F401 - fixtures
    full_stage,
    media_root,
    png,
    submit,
    train_images,
)


@pytest.fixture(autouse=True)
def _detectors_forgotten():
    detector_module._detectors.clear()


def training_references(trained_model, limit: int | None = None) -> list[ReferenceImageIn]:
    root = trained_model.test_files[0].parent.parent.parent
    files = sorted((root / "train").glob("*/*.png"))[:limit]
    return [ReferenceImageIn(label=path.parent.name, name=path.name, data=path.read_bytes())
            for path in files]


@pytest.fixture
def fitted(champion, trained_model) -> ReferenceSet:
    """The champion's reference set: the demo's training digits, its detector fitted."""
    reference = reference_set_store(version=champion,
                                    images=training_references(trained_model))
    return reference_detector_fit(reference=reference)


@pytest.fixture
def held_out_digits(trained_model) -> list[Path]:
    return sorted(trained_model.test_files)


def unrelated_images(count: int, *, seed: int = 0) -> list[bytes]:
    """Patches of the photos bundled with scikit-learn (a temple in China, a flower)."""
    rng = random.Random(seed)
    photos = [Image.fromarray(array) for array in load_sample_images().images]
    images = []
    for n in range(count):
        photo = photos[n % len(photos)]
        side = rng.randint(32, 200)
        x, y = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
        images.append(png(photo.crop((x, y, x + side, y + side))))
    return images


def scored(version, images: list[bytes]) -> list[FeatureDistance]:
    learn = predictor.learner_for(version_id=version.pk, sha256=version.sha256,
                                  open_artifact=lambda: version.artifact.open("rb"))
    outputs = predictor.predict_images(learn, images)
    detector = detector_for(type(version).objects.select_related("reference_set")
                            .get(pk=version.pk))
    assert detector is not None
    return detector.score(np.stack([output.features for output in outputs]))


def flagged_share(distances: list[FeatureDistance]) -> float:
    return sum(d.distance > d.threshold for d in distances) / len(distances)


# --- features from the same forward pass ---------------------------------------------------


def test_it_stores_every_predictions_features_from_its_one_forward_pass(
        champion, submit, held_out_digits, trained_model):  # noqa: F811
    warm = submit(held_out_digits[0])
    assert predict_waiting(batch_size=32, wait_ms=0) == 1  # loads and caches the learner
    learn = predictor._learners[champion.pk][1]
    forwards = []
    learn.model.register_forward_hook(lambda *_: forwards.append(1))
    paths = held_out_digits[1:9]
    cases = [submit(path) for path in paths]

    assert predict_waiting(batch_size=32, wait_ms=0) == 8

    assert len(forwards) == 1  # one batch, one forward pass: the features came with it
    body = learn.model[:-1]  # the demo CNN: everything before its last linear layer
    batch = learn.dls.test_dl([path.read_bytes() for path in paths], num_workers=0).one_batch()
    expected = body(batch[0]).detach().numpy()
    for case, row in zip(cases, expected, strict=True):
        prediction = Prediction.objects.get(case=case)
        assert len(prediction.features) == 64
        np.testing.assert_allclose(np.asarray(prediction.features), row, rtol=1e-4, atol=1e-5)
        # no reference set yet: stored, not judged
        assert prediction.ood_distance is None and prediction.ood_percentile is None
    assert Prediction.objects.get(case=warm).features is not None


def test_the_feature_layer_of_a_vision_learner_is_its_heads_last_linear():
    from fastai.vision.learner import create_vision_model
    from torchvision.models import resnet18

    model = create_vision_model(resnet18, n_out=3, pretrained=False)
    layer = predictor.feature_layer(model)
    assert layer is model[1][-1]
    assert layer.in_features == 512


# --- the detector ---------------------------------------------------------------------------


def test_it_keeps_held_out_digits_and_flags_night_time_and_unrelated_images(
        fitted, champion, held_out_digits):
    rng = random.Random(0)
    digits = [path.read_bytes() for path in held_out_digits]
    night = [png(night_time(Image.open(path), rng=rng)) for path in held_out_digits[:120]]

    assert flagged_share(scored(champion, digits)) <= 0.10
    assert flagged_share(scored(champion, night)) >= 0.95
    assert flagged_share(scored(champion, unrelated_images(120))) >= 0.90


def test_its_threshold_keeps_95_percent_of_held_out_reference_images(fitted, champion,
                                                                     trained_model):
    # Every image held out once: five folds of a fifth each.
    folds = list(fitted.images.values_list("fold", flat=True))
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    assert max(folds.count(f) for f in range(5)) - min(folds.count(f) for f in range(5)) <= 1
    assert fitted.images.filter(features__isnull=True).count() == 0
    calibration = np.asarray(fitted.detector_calibration)
    assert len(calibration) == fitted.size
    assert list(calibration) == sorted(calibration)
    assert (calibration <= fitted.detector_threshold).mean() == pytest.approx(KEEP, abs=0.01)
    # Digits it never saw, from the same source: kept at about the same rate.
    root = trained_model.test_files[0].parent.parent.parent
    valid = [path.read_bytes() for path in sorted((root / "valid").glob("*/*.png"))]
    assert 1 - flagged_share(scored(champion, valid)) == pytest.approx(KEEP, abs=0.05)


def test_a_low_resolution_digit_is_caught_by_features_and_input_statistics_together(
        fitted, champion, deployment, submit, held_out_digits, train_images):  # noqa: F811
    domain_thresholds_fit(deployment=deployment, images=train_images)
    cases = [submit(content=png(low_resolution(Image.open(path))))
             for path in held_out_digits[:20]]

    predict_waiting(batch_size=32, wait_ms=0)

    for case in cases:
        prediction = Prediction.objects.get(case=case)
        assert prediction.out_of_domain
        assert prediction.ood_distance is not None  # scored too, whatever it says


def test_it_refuses_a_reference_set_too_small_to_calibrate(champion, trained_model):
    reference = reference_set_store(version=champion,
                                    images=training_references(trained_model, MIN_IMAGES - 1))

    with pytest.raises(ServiceError, match=rf"has {MIN_IMAGES - 1} images; the out-of-domain "
                                           rf"detector needs at least {MIN_IMAGES}"):
        reference_detector_fit(reference=reference)

    assert reference_detectors_fit() == []
    reference.refresh_from_db()
    assert reference.detector_threshold is None
    assert "needs at least 40" in reference.detector_error
    assert reference_detectors_fit() == []  # not tried again for the same artifact


def test_it_fits_sets_stored_before_detectors_once(champion, trained_model):
    reference = reference_set_store(version=champion,
                                    images=training_references(trained_model, 200))

    assert [r.pk for r in reference_detectors_fit()] == [reference.pk]
    assert reference_detectors_fit() == []

    reference.refresh_from_db()
    assert reference.detector_sha256 == champion.sha256
    assert reference.detector_threshold > 0


# --- the reason and the routing -------------------------------------------------------------


@pytest.mark.parametrize(("distance", "percentile", "text"), [
    (41.23, 99.64, "unlike the images this model was trained on: farther than 99.6% of them "
                   "(distance 41.2 > 17.5)"),
    (80.0, 100.0, "unlike the images this model was trained on: farther than all of them "
                  "(distance 80.0 > 17.5)"),
])
def test_it_says_how_unlike_the_reference_a_case_is(distance, percentile, text):
    reasons = ood_reasons(brightness=200, contrast=60, width=32, height=32, confidence=0.97,
                          entropy=0.1, limits=Limits(),
                          features=FeatureDistance(distance=distance, percentile=percentile,
                                                   threshold=17.5))

    assert reasons == [{"code": OodReason.UNLIKE_REFERENCE, "text": text}]


def test_it_passes_a_case_within_the_threshold():
    assert ood_reasons(brightness=200, contrast=60, width=32, height=32, confidence=0.97,
                       entropy=0.1, limits=Limits(),
                       features=FeatureDistance(distance=17.5, percentile=95.0,
                                                threshold=17.5)) == []


def test_a_case_unlike_the_reference_goes_to_reviewers_never_decided_by_the_model(
        fitted, champion, full_stage, submit, held_out_digits):  # noqa: F811
    # No input limits: the features alone catch it.
    photo = submit(content=unrelated_images(1, seed=3)[0])
    digit = submit(held_out_digits[0])

    assert predict_waiting(batch_size=32, wait_ms=0) == 2

    flagged = Prediction.objects.get(case=photo)
    assert flagged.out_of_domain
    assert [r["code"] for r in flagged.ood_reasons] == [OodReason.UNLIKE_REFERENCE]
    assert flagged.ood_distance > fitted.detector_threshold
    assert flagged.ood_percentile == 100.0
    assert "farther than all of them" in flagged.ood_reasons[0]["text"]
    photo = Case.objects.get(pk=photo.pk)
    assert photo.status == Case.Status.IN_REVIEW
    assert not hasattr(photo, "decision")
    assert ReviewTask.objects.get(case=photo).reason == ReviewTask.Reason.OUT_OF_DOMAIN

    kept = Prediction.objects.get(case=digit)
    assert not kept.out_of_domain
    assert kept.ood_distance <= fitted.detector_threshold
    assert 0 <= kept.ood_percentile < 100


def test_a_fitted_detector_costs_no_statement_once_loaded(fitted, champion, submit,  # noqa: F811
                                                          held_out_digits,
                                                          django_assert_num_queries):
    submit(held_out_digits[0])
    predict_waiting(batch_size=32, wait_ms=0)  # the worker builds the detector once
    for path in held_out_digits[1:9]:
        submit(path)

    with django_assert_num_queries(15):  # as without a detector (test_inference_batching)
        assert predict_waiting(batch_size=32, wait_ms=0) == 8

    assert Prediction.objects.filter(ood_distance__isnull=False).count() == 9


def test_a_detector_fitted_for_another_artifact_is_not_used(fitted, champion):
    ReferenceSet.objects.filter(pk=fitted.pk).update(detector_sha256="0" * 64)

    assert detector_for(type(champion).objects.select_related("reference_set")
                        .get(pk=champion.pk)) is None



def test_the_models_page_shows_the_detectors_threshold(fitted, champion, admin_user, client):
    client.force_login(admin_user)

    page = client.get(f"/deployments/{champion.deployment.slug}/models/").content.decode()

    assert (f"out-of-domain detector: farther than {fitted.detector_threshold:.1f} "
            "(keeps 95% of the reference)") in page


def test_the_models_page_says_why_a_version_has_no_detector(champion, trained_model,
                                                            admin_user, client):
    reference_set_store(version=champion,
                        images=training_references(trained_model, MIN_IMAGES - 1))
    reference_detectors_fit()
    client.force_login(admin_user)

    page = client.get(f"/deployments/{champion.deployment.slug}/models/").content.decode()

    assert "no out-of-domain detector: the reference set has 39 images" in page
