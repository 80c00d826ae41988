"""Out-of-domain detection on a model's own features, for any learner.

The features are the input of the model's last linear layer (`predictor.feature_layer`), taken
from the forward pass that predicts. A case is compared with the model version's reference set:
its distance is the Mahalanobis distance to the nearest label's mean of the reference features,
with one covariance shared by all labels (Lee et al., 2018) and shrunk towards a multiple of the
identity (Ledoit-Wolf), so that a few hundred images of a few hundred features still give a
usable inverse.

The threshold is calibrated on held-out reference images, by cross-fitting: the images are
dealt into FOLDS folds, and each fold's distances are measured by a detector fitted on the
other folds. Every image is thus held out once, so the threshold (KEEP of the held-out
distances lie within it) rests on all of them rather than on a fifth, and those distances turn
any distance into a percentile ("farther than 99.6% of them"). The detector that scores cases
is then fitted on every image.

The fitted state stored in the database is the reference features themselves (with each
image's fold), the threshold and the held-out distances; the means and the covariance are
computed again from the features when a worker first needs the detector (a fraction of a
second), so nothing opaque is stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from reviewplatform.errors import ServiceError

from .models import ReferenceImage, ReferenceSet
from .ood import FeatureDistance

if TYPE_CHECKING:
    from .models import ModelVersion

KEEP = 0.95
FOLDS = 5
MIN_IMAGES = 40  # 8 held out per fold, 32 to fit on


@dataclass(frozen=True)
class Detector:
    """A fitted detector: label means and the shared precision's Cholesky factor (both in the
    whitened space, so that a batch costs one matrix product), the threshold and the held-out
    distances, ascending."""

    whitened_means: np.ndarray  # (labels, d) @ L
    whiten: np.ndarray  # L, with precision = L @ L.T
    threshold: float
    calibration: np.ndarray

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Each row's Mahalanobis distance to the nearest label's mean."""
        z = np.asarray(features, dtype=np.float64) @ self.whiten
        means = self.whitened_means
        squared = ((z * z).sum(1)[:, None] - 2 * z @ means.T + (means * means).sum(1)[None, :])
        return np.sqrt(np.clip(squared.min(1), 0, None))

    def score(self, features: np.ndarray) -> list[FeatureDistance]:
        distances = self.distances(features)
        nearer = np.searchsorted(self.calibration, distances, side="left")
        percentiles = nearer * 100 / len(self.calibration)
        return [FeatureDistance(distance=float(d), percentile=float(p), threshold=self.threshold)
                for d, p in zip(distances, percentiles, strict=True)]


def folds_deal(size: int, *, seed: int = 0) -> np.ndarray:
    """Each of `size` reference images' fold, 0 to FOLDS - 1 (a fixed random deal)."""
    if size < MIN_IMAGES:
        raise ServiceError(
            f"the reference set has {size} images; the out-of-domain detector needs at least "
            f"{MIN_IMAGES} (a fifth of them is held out in turn to set its threshold)",
            field="reference")
    folds = np.empty(size, dtype=np.int64)
    folds[np.random.default_rng(seed).permutation(size)] = np.arange(size) % FOLDS
    return folds


def _fit(features: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Label means and the Cholesky factor of the shrunk shared precision."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(features, dtype=np.float64)
    names = np.asarray(labels)
    classes = sorted(set(labels))
    means = np.stack([x[names == label].mean(0) for label in classes])
    centred = x - means[np.searchsorted(np.asarray(classes), names)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    whiten = np.linalg.cholesky((precision + precision.T) / 2)
    return means @ whiten, whiten


def detector_calibrate(features: np.ndarray, labels: Sequence[str], folds: np.ndarray
                       ) -> Detector:
    """Each fold's distances by a detector fitted on the other folds; the threshold within
    which KEEP of those held-out distances lie; the detector itself fitted on every image."""
    if not np.all(np.isfinite(features)):
        raise ServiceError("the model's features of the reference images are not all finite",
                           field="reference")
    names = np.asarray(labels)
    held_out = []
    for fold in range(FOLDS):
        fit = folds != fold
        whitened_means, whiten = _fit(features[fit], list(names[fit]))
        partial = Detector(whitened_means=whitened_means, whiten=whiten, threshold=0.0,
                           calibration=np.zeros(1))
        held_out.append(partial.distances(features[~fit]))
    calibration = np.sort(np.concatenate(held_out))
    whitened_means, whiten = _fit(features, list(names))
    return Detector(whitened_means=whitened_means, whiten=whiten,
                    threshold=float(np.quantile(calibration, KEEP)), calibration=calibration)


# Fitted detectors, per reference set, kept while its fit is unchanged.
_detectors: dict[int, tuple[datetime | None, Detector]] = {}


def detector_for(version: ModelVersion) -> Detector | None:
    """The detector of a model version (its reference set read with it, `select_related`), built
    on first use from the stored reference features; None when none is fitted for this very
    artifact. Reads the database only when a fit is new to this process."""
    reference: ReferenceSet | None = getattr(version, "reference_set", None)
    if (reference is None or reference.detector_threshold is None
            or reference.detector_sha256 != version.sha256):
        return None
    cached = _detectors.get(reference.pk)
    if cached is not None and cached[0] == reference.detector_fitted_at:
        return cached[1]
    rows = list(ReferenceImage.objects.filter(reference_set=reference, features__isnull=False)
                .order_by("id").values_list("label", "features"))
    if not rows:
        return None
    calibration = ReferenceSet.objects.values_list("detector_calibration", flat=True).get(
        pk=reference.pk)
    whitened_means, whiten = _fit(np.asarray([features for _, features in rows]),
                                  [label for label, _ in rows])
    detector = Detector(whitened_means=whitened_means, whiten=whiten,
                        threshold=float(reference.detector_threshold),
                        calibration=np.asarray(calibration, dtype=np.float64))
    _detectors[reference.pk] = (reference.detector_fitted_at, detector)
    return detector
