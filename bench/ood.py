"""Out-of-domain detection: how well the detector on the model's features, together with the
input statistics, tells the demo learner's own kind of image from others, and what it costs.

The demo learner is trained afresh (scikit-learn's digits, fixed split); its training and
validation digits are the champion's reference set (as the demo registers it: images the
network learnt from lie closer to it than new ones, so a reference of training images alone
sets too tight a threshold; `in_domain_kept_train_only_reference` says by how much) and the
training digits fit the input limits, through the platform's own services. Then, scored as
the worker scores a batch:
- in domain: the held-out test digits (never seen in training nor in the reference set);
- night-time and low-resolution versions of the same digits (`inference.demo_model`);
- unrelated images: square patches of every photo bundled with the installed wheels
  (scikit-learn's china.jpg and flower.jpg, matplotlib's grace_hopper.jpg and
  Minduka_Present_Blue_Pack.png), 32 to 200 px, as many as there are test digits.

AUROC is computed for three scores: the features and input statistics together (what routes a
case: any input limit broken ranks above every distance, then the Mahalanobis distance), the
features alone, and the maximum softmax probability (the baseline: confidence). `in_domain_kept`
is the share of held-out digits that neither check flags.

`ood_cost_ratio`: the time to score a batch's features and store them (the detector, the
vectors' text form, an insert of the vectors with their distances into a table of the same
columns) over the time of the batched forward pass (`predictor.predict_images` on the same 64
images: the learner's transforms and the model), each timed over a window of WINDOW_S seconds,
RUNS times alternately; each run's ratio is taken against that run's own forward pass, and the
median, min and max of the runs are written.

Targets: AUROC >= 0.97 unrelated and night-time, >= 0.95 low resolution (together),
in-domain kept >= 0.94, cost ratio <= 0.10. Needs PostgreSQL (`make bench` starts it).
BENCH_SCALE (default 1) scales the windows.
"""

from __future__ import annotations

import io
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.harness import django_test_database, results_write
from bench.inference import spread, timed

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
RUNS = 3
WINDOW_S = 3.0 * SCALE
BATCH = 64
TARGETS = ("auroc_unrelated >= 0.97; auroc_night >= 0.97; auroc_lowres >= 0.95; "
           "in_domain_kept >= 0.94; ood_cost_ratio <= 0.10")


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def unrelated_images(count: int, *, seed: int = 0) -> list[bytes]:
    """Square patches of the photos that ship inside installed wheels (no download)."""
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    photos = [Image.fromarray(array) for array in load_sample_images().images]
    for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
        with matplotlib.cbook.get_sample_data(name) as file:
            photos.append(Image.open(file).convert("RGB"))
    rng = random.Random(seed)
    images = []
    for n in range(count):
        photo = photos[n % len(photos)]
        side = rng.randint(32, min(200, *photo.size))
        x, y = rng.randint(0, photo.width - side), rng.randint(0, photo.height - side)
        images.append(png(photo.crop((x, y, x + side, y + side))))
    return images


def auroc(in_domain: list[float], shifted: list[float]) -> float:
    """Area under the ROC curve, shifted cases scoring higher being right."""
    from sklearn.metrics import roc_auc_score

    labels = [0] * len(in_domain) + [1] * len(shifted)
    return round(float(roc_auc_score(labels, [*in_domain, *shifted])), 4)


def scores(learn: Any, detector: Any, limits: Any, images: list[bytes]) -> dict[str, list]:
    """What the worker computes for each image, as scores (higher: less like the reference)."""
    from inference import predictor
    from inference.ood import ood_reasons

    together, features, softmax, flagged = [], [], [], []
    for start in range(0, len(images), BATCH):
        batch = images[start:start + BATCH]
        outputs = predictor.predict_images(learn, batch)
        distances = detector.score(np.stack([output.features for output in outputs]))
        for image, distance in zip(batch, distances, strict=True):
            s = predictor.input_stats(image)
            broken = ood_reasons(brightness=s.brightness, contrast=s.contrast, width=s.width,
                                 height=s.height, confidence=None, entropy=None, limits=limits)
            scaled = distance.distance / distance.threshold
            features.append(scaled)
            together.append(scaled + (1e6 if broken else 0))  # a broken limit: flagged first
            flagged.append(bool(broken) or distance.distance > distance.threshold)
        softmax += [-output.confidence for output in outputs]
    return {"together": together, "features": features, "softmax": softmax,
            "flagged": flagged}


_STORE_SQL = """
    INSERT INTO bench_ood_features (features, ood_distance, ood_percentile)
    SELECT features::vector, ood_distance, ood_percentile
    FROM unnest(%(features)s::text[], %(ood_distance)s::float8[], %(ood_percentile)s::float8[])
         AS row (features, ood_distance, ood_percentile)"""


def cost_ratio(learn: Any, detector: Any, images: list[bytes]) -> dict[str, Any]:
    """The feature check's time (score + store) over the batched forward pass's, per run."""
    from django.db import connection

    from inference import predictor
    from inference.services import vector_text

    batch = images[:BATCH]
    features = np.stack([o.features for o in predictor.predict_images(learn, batch)])
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE bench_ood_features (features vector, "
                       "ood_distance float8, ood_percentile float8)")

    def forward() -> int:
        predictor.predict_images(learn, batch)
        return 1

    def check() -> int:
        distances = detector.score(features)
        params = {"features": [vector_text(row) for row in features],
                  "ood_distance": [d.distance for d in distances],
                  "ood_percentile": [d.percentile for d in distances]}
        with connection.cursor() as cursor:
            cursor.execute(_STORE_SQL, params)
        return 1

    forward_ms, check_ms, ratios, windows = [], [], [], []
    for _ in range(RUNS):
        forward_rate, forward_window = timed(forward, WINDOW_S)
        check_rate, check_window = timed(check, WINDOW_S)
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bench_ood_features")
        forward_ms.append(1000 / forward_rate)
        check_ms.append(1000 / check_rate)
        ratios.append(forward_rate / check_rate)  # check time over forward time
        windows.append(min(forward_window, check_window))
    return {"ood_cost_ratio": spread(ratios), "forward_ms_per_batch": spread(forward_ms, 2),
            "check_ms_per_batch": spread(check_ms, 3), "shortest_window_s": round(min(windows), 2),
            "feature_dims": int(features.shape[1]), "batch": BATCH}


def main() -> None:
    from django.conf import settings
    from django.contrib.auth.models import User

    from inference import predictor
    from inference.demo_model import (
        DIGIT_LABELS,
        demo_model_train,
        low_resolution,
        night_time,
    )
    from inference.detector import detector_calibrate, detector_for, folds_deal
    from inference.models import ModelVersion
    from inference.reference import (
        ReferenceImageIn,
        reference_detector_fit,
        reference_set_store,
    )
    from inference.services import _limits, domain_thresholds_fit, model_version_register
    from rollout.services import deployment_create

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings.MEDIA_ROOT = root / "media"
        trained = demo_model_train(data_dir=root / "digits", out=root / "digits.pkl")
        print(f"demo learner trained: held-out accuracy {trained.test_accuracy:.3f}",
              flush=True)
        admin = User.objects.create_superuser("bench-admin", password="x")
        deployment = deployment_create(slug="digits", name="Digits", labels=DIGIT_LABELS,
                                       regions=[("north", "North", "Europe/Oslo")], actor=admin)
        champion = model_version_register(deployment=deployment, path=trained.path,
                                          name="champion", champion=True, actor=admin)
        train_files = sorted((root / "digits" / "train").glob("*/*.png"))
        valid_files = sorted((root / "digits" / "valid").glob("*/*.png"))
        reference = reference_set_store(version=champion, images=[
            ReferenceImageIn(label=path.parent.name, name=path.name, data=path.read_bytes())
            for path in train_files + valid_files])
        reference_detector_fit(reference=reference)
        thresholds = domain_thresholds_fit(deployment=deployment,
                                           images=[path.read_bytes() for path in train_files])
        version = ModelVersion.objects.select_related("reference_set").get(pk=champion.pk)
        detector = detector_for(version)
        assert detector is not None
        learn = predictor.learner_for(version_id=version.pk, sha256=version.sha256,
                                      open_artifact=lambda: version.artifact.open("rb"))
        limits = _limits(thresholds)
        limits = type(limits)(min_brightness=limits.min_brightness,
                              max_brightness=limits.max_brightness,
                              min_contrast=limits.min_contrast, min_pixels=limits.min_pixels)

        test_files = sorted(trained.test_files)
        rng = random.Random(0)
        sets = {
            "in_domain": [path.read_bytes() for path in test_files],
            "night": [png(night_time(Image.open(path), rng=rng)) for path in test_files],
            "lowres": [png(low_resolution(Image.open(path))) for path in test_files],
            "unrelated": unrelated_images(len(test_files)),
        }
        scored = {name: scores(learn, detector, limits, images)
                  for name, images in sets.items()}
        clean = scored["in_domain"]
        figures: dict[str, Any] = {}
        for name in ("unrelated", "night", "lowres"):
            figures[f"auroc_{name}"] = auroc(clean["together"], scored[name]["together"])
        figures["in_domain_kept"] = round(1 - float(np.mean(clean["flagged"])), 4)
        for name in ("unrelated", "night", "lowres"):
            figures[f"auroc_{name}_features_only"] = auroc(clean["features"],
                                                           scored[name]["features"])
        for name in ("unrelated", "night", "lowres"):
            figures[f"auroc_max_softmax_{name}"] = auroc(clean["softmax"],
                                                         scored[name]["softmax"])
        for name in ("unrelated", "night", "lowres"):
            figures[f"flagged_{name}"] = round(float(np.mean(scored[name]["flagged"])), 4)
        reference.refresh_from_db()
        calibration = np.asarray(reference.detector_calibration)
        figures["held_out_reference_kept"] = round(
            float((calibration <= reference.detector_threshold).mean()), 4)
        # The same, had the reference been the training digits alone.
        stored = list(reference.images.order_by("id").values_list("label", "features"))
        train_only = [(label, vector) for label, vector in stored[:len(train_files)]]
        train_detector = detector_calibrate(
            np.asarray([vector for _, vector in train_only]),
            [label for label, _ in train_only], folds_deal(len(train_only)))
        clean_features = np.stack([o.features for start in range(0, len(test_files), BATCH)
                                   for o in predictor.predict_images(
                                       learn, sets["in_domain"][start:start + BATCH])])
        figures["in_domain_kept_train_only_reference"] = round(float(
            (train_detector.distances(clean_features) <= train_detector.threshold).mean()), 4)
        figures["cases_per_set"] = len(test_files)
        figures["reference_images"] = reference.size
        figures.update(cost_ratio(learn, detector, sets["in_domain"]))
    ratio = figures["ood_cost_ratio"]["median"]
    figures["targets"] = TARGETS
    figures["targets_met"] = bool(
        figures["auroc_unrelated"] >= 0.97 and figures["auroc_night"] >= 0.97
        and figures["auroc_lowres"] >= 0.95 and figures["in_domain_kept"] >= 0.94
        and ratio <= 0.10)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    results_write("ood", figures)


if __name__ == "__main__":
    with django_test_database():
        main()
