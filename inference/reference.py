"""Reference sets: images like those a model version was trained on, uploaded as a zip of one
folder per label (as fastai's `ImageDataLoaders.from_folder` reads a training folder), or, for
a champion registered without one, the first cases reviewers decided with one of its labels."""

from __future__ import annotations

import io
import logging
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from reviewplatform.errors import ServiceError
from reviewplatform.files import files_deleted_on_error
from reviewplatform.models import Decision

from . import predictor
from .detector import detector_calibrate, folds_deal
from .models import DomainThresholds, ModelVersion, ReferenceImage, ReferenceSet
from .services import domain_thresholds_fit

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MIN_IMAGES = 10


@dataclass(frozen=True)
class ReferenceImageIn:
    label: str
    name: str
    data: bytes


def _label_of(path: PurePosixPath) -> str | None:
    """The label folder of a member: the folder right above the file (`train/cat/1.jpg` and
    `cat/1.jpg` are both `cat`); None for files at the top."""
    return path.parent.name or None


def reference_zip_read(file: IO[bytes], *, labels: list[str]) -> list[ReferenceImageIn]:
    """The images of a zip of label folders, each decoded to prove it is an image. Refused
    with a reason: not a zip, a folder that is not a label, too many or too large files, an
    image that does not decode, fewer than 10 images."""
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile as exc:
        raise ServiceError("the reference set is not a zip file", field="reference") from exc
    members = [m for m in archive.infolist() if not m.is_dir()
               and PurePosixPath(m.filename).suffix.lower() in IMAGE_SUFFIXES
               and not PurePosixPath(m.filename).name.startswith(".")
               and "__MACOSX" not in m.filename]
    if len(members) > settings.REFERENCE_MAX_IMAGES:
        raise ServiceError(f"the reference set has {len(members)} images; the most is "
                           f"{settings.REFERENCE_MAX_IMAGES}", field="reference")
    unknown = sorted({str(_label_of(PurePosixPath(m.filename))) for m in members}
                     - set(labels))
    if unknown:
        raise ServiceError(
            f"the reference set has folders that are not labels of the model: "
            f"{', '.join(unknown)} (its labels: {', '.join(labels)}); put each image in the "
            "folder of its label", field="reference")
    images = []
    for member in members:
        if member.file_size > settings.MAX_IMAGE_BYTES:
            raise ServiceError(f"{member.filename} is {member.file_size} bytes; the limit is "
                               f"{settings.MAX_IMAGE_BYTES}", field="reference")
        data = archive.read(member)
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ServiceError(f"{member.filename} is not an image that can be read",
                               field="reference") from exc
        path = PurePosixPath(member.filename)
        images.append(ReferenceImageIn(label=str(_label_of(path)), name=path.name, data=data))
    if len(images) < MIN_IMAGES:
        raise ServiceError(f"the reference set needs at least {MIN_IMAGES} images; it has "
                           f"{len(images)}", field="reference")
    return images


def reference_set_store(*, version: ModelVersion, images: list[ReferenceImageIn],
                        origin: str = ReferenceSet.Origin.UPLOAD,
                        written: list[str] | None = None) -> ReferenceSet:
    """Keep the images as the version's reference set (in the caller's transaction); the
    names of the files written are added to `written`, for the caller to remove should its
    transaction not commit."""
    reference = ReferenceSet.objects.create(
        model_version=version, origin=origin, size=len(images),
        by_label=dict(sorted(Counter(image.label for image in images).items())))
    folder = f"{version.deployment.slug}/{version.pk}"
    for n, image in enumerate(images):
        row = ReferenceImage(reference_set=reference, label=image.label)
        row.image.save(f"{folder}/{image.label}/{n:05d}-{image.name}",
                       ContentFile(image.data), save=False)
        if written is not None:
            written.append(str(row.image.name))
        row.save()
    return reference


def reference_sets_fill(*, size: int) -> list[ReferenceSet]:
    """Give each champion that has no reference set the first `size` cases reviewers decided
    with one of its labels (a reviewer who saw nothing like the training images answers "out of
    domain", which is no label), once there are that many; fit its deployment's input limits
    from them where none are set. Returns the sets made."""
    made = []
    for version in (ModelVersion.objects.filter(is_champion=True, reference_set__isnull=True)
                    .select_related("deployment")):
        decisions = list(Decision.objects.filter(
            case__deployment=version.deployment, source=Decision.Source.HUMAN,
            case__image_deleted_at__isnull=True,  # deleted under retention
            label__in=list(version.labels)).select_related("case")
            .order_by("decided_at", "id")[:size])
        if len(decisions) < size:
            continue
        images = []
        for decision in decisions:
            with decision.case.image.open("rb") as file:
                images.append(ReferenceImageIn(label=decision.label,
                                               name=PurePosixPath(str(decision.case.image.name)).name,
                                               data=file.read()))
        with files_deleted_on_error() as written, transaction.atomic():
            made.append(reference_set_store(version=version, images=images,
                                            origin=ReferenceSet.Origin.REVIEWS,
                                            written=written))
            if not DomainThresholds.objects.filter(deployment=version.deployment).exists():
                domain_thresholds_fit(deployment=version.deployment,
                                      images=[image.data for image in images])
    return made


FEATURE_BATCH = 64


def reference_detector_fit(*, reference: ReferenceSet) -> ReferenceSet:
    """Fit the reference set's out-of-domain detector (`inference.detector`) for its model
    version's artifact: the version's features of every image, from its own forward pass, the
    held-out distances (cross-fitted) and the threshold. Slow (the model predicts every image): call
    it outside any transaction; the result is stored in one short one. Refused with a reason:
    too few images to hold some out, a model without a linear layer to take features from."""
    version = reference.model_version
    rows = list(reference.images.order_by("id"))
    folds = folds_deal(len(rows))
    learn = predictor.learner_for(version_id=version.pk, sha256=version.sha256,
                                  open_artifact=lambda: version.artifact.open("rb"))
    features = []
    for start in range(0, len(rows), FEATURE_BATCH):
        images = []
        for row in rows[start:start + FEATURE_BATCH]:
            with row.image.open("rb") as file:
                images.append(file.read())
        for output in predictor.predict_images(learn, images):
            if output.features is None:
                raise ServiceError(f"{version} has no linear layer to take features from: "
                                   "only input statistics guard it", field="reference")
            features.append(output.features)
    matrix = np.stack(features)
    detector = detector_calibrate(matrix, [row.label for row in rows], folds)
    for row, vector, fold in zip(rows, matrix, folds, strict=True):
        row.features = vector
        row.fold = int(fold)
    with transaction.atomic():
        ReferenceImage.objects.bulk_update(rows, ["features", "fold"], batch_size=500)
        reference.detector_threshold = detector.threshold
        reference.detector_calibration = [float(d) for d in detector.calibration]
        reference.detector_sha256 = version.sha256
        reference.detector_fitted_at = timezone.now()
        reference.detector_error = ""
        reference.save(update_fields=["detector_threshold", "detector_calibration",
                                      "detector_sha256", "detector_fitted_at",
                                      "detector_error"])
    logger.info("out-of-domain detector of %s: threshold %.2f, keeps %d of %d held out",
                version, detector.threshold,
                int((detector.calibration <= detector.threshold).sum()), len(detector.calibration))
    return reference


def reference_detectors_fit(*, reference_ids: list[int] | None = None) -> list[ReferenceSet]:
    """Fit the detectors of the reference sets that have none for their version's current
    artifact (or of `reference_ids`); a set that cannot be fitted keeps the reason
    (`detector_error`) and is not tried again until its artifact changes. Returns those fitted.
    """
    todo = ReferenceSet.objects.select_related("model_version__deployment")
    if reference_ids is not None:
        todo = todo.filter(pk__in=reference_ids)
    else:
        todo = todo.filter(model_version__is_active=True).filter(
            ~Q(detector_sha256=F("model_version__sha256"))
            | Q(detector_fitted_at__isnull=True, detector_error=""))
    fitted = []
    for reference in todo.order_by("id"):
        try:
            fitted.append(reference_detector_fit(reference=reference))
        except ServiceError as exc:
            logger.warning("no out-of-domain detector for %s: %s", reference.model_version, exc)
            ReferenceSet.objects.filter(pk=reference.pk).update(
                detector_error=str(exc), detector_sha256=reference.model_version.sha256)
    return fitted
