"""Writes for model versions and predictions."""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path

from django.contrib.auth.models import User
from django.core.files import File
from django.db import IntegrityError, transaction
from PIL import Image

from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.models import Case, Deployment

from . import predictor
from .models import ModelVersion, Prediction

logger = logging.getLogger(__name__)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _probe_image() -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def model_version_register(
    *,
    deployment: Deployment,
    path: Path,
    name: str,
    champion: bool = False,
    notes: str = "",
    actor: User | None = None,
) -> ModelVersion:
    """Register an exported fastai learner after proving that it loads and predicts.

    Its vocabulary must equal the deployment's label set. A new champion replaces the old one,
    which stays active as a challenger.
    """
    if not path.is_file():
        raise ServiceError(f"no such file: {path}", field="path")
    if deployment.model_versions.filter(name=name).exists():
        raise Conflict(f"deployment {deployment.slug} already has a model version {name!r}",
                       field="name")
    try:
        learn = predictor.learner_load(str(path))
    except Exception as exc:  # any failure to unpickle means: not a usable learner
        raise ServiceError(f"the file is not a loadable fastai learner ({exc})",
                           field="path") from exc
    vocab = predictor.learner_vocab(learn)
    missing = sorted(set(deployment.labels) - set(vocab))
    extra = sorted(set(vocab) - set(deployment.labels))
    if missing or extra:
        raise ServiceError(
            f"the learner's labels differ from deployment {deployment.slug}'s: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}", field="labels")
    try:
        (probe,) = predictor.predict_images(learn, [_probe_image()])
    except Exception as exc:
        raise ServiceError(f"the learner loaded but failed a probe prediction ({exc})",
                           field="path") from exc
    if abs(sum(probe.probabilities.values()) - 1) > 1e-3:
        raise ServiceError("the learner's outputs are not probabilities (they do not sum to 1)",
                           field="path")
    sha256 = _sha256(path)
    with transaction.atomic():
        if champion:
            deployment.model_versions.filter(is_champion=True).update(is_champion=False)
        with path.open("rb") as file:
            version = ModelVersion(deployment=deployment, name=name, sha256=sha256, labels=vocab,
                                   is_champion=champion, notes=notes, created_by=actor)
            version.artifact.save(f"{deployment.slug}-{name}-{sha256[:12]}.pkl", File(file),
                                  save=False)
        version.save()
    logger.info("registered %s (sha256 %s)", version, sha256)
    return version


def _prediction_store(*, case: Case, version: ModelVersion, **fields: object) -> None:
    """Store one prediction; a redelivered task finds it already there and changes nothing."""
    try:
        with transaction.atomic():
            Prediction.objects.create(case=case, model_version=version, **fields)
    except IntegrityError:
        logger.info("prediction for case %s by %s already stored", case.pk, version.pk)


def case_predict(*, case_id: int) -> None:
    """Predict a received case with every active model version, then route it.

    Idempotent by state: a case no longer `received` is left alone, versions that already
    predicted it are skipped. Models run outside any transaction; a failing model is recorded
    as a failed prediction and never blocks the case.
    """
    from rollout.services import case_route

    case = Case.objects.filter(pk=case_id, status=Case.Status.RECEIVED).first()
    if case is None:
        return
    done = set(case.predictions.values_list("model_version_id", flat=True))
    versions = [v for v in ModelVersion.objects.filter(deployment_id=case.deployment_id,
                                                      is_active=True) if v.pk not in done]
    if versions:
        with case.image.open("rb") as file:
            image = file.read()
    for version in versions:
        try:
            learn = predictor.learner_for(version_id=version.pk, sha256=version.sha256,
                                          open_artifact=lambda v=version: v.artifact.open("rb"))
            (output,) = predictor.predict_images(learn, [image])
        except Exception as exc:  # a broken model must not block the case: humans decide
            logger.exception("model version %s failed on case %s", version.pk, case.pk)
            _prediction_store(case=case, version=version, status=Prediction.Status.FAILED,
                              error=f"{type(exc).__name__}: {exc}"[:2000])
            continue
        _prediction_store(case=case, version=version, status=Prediction.Status.OK,
                          label=output.label, confidence=output.confidence,
                          probabilities=output.probabilities, entropy=output.entropy,
                          latency_ms=output.latency_ms)
    case_route(case_id=case.pk)
