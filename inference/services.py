"""Writes for model versions and predictions."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import statistics
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.postgres.expressions import ArraySubquery
from django.core.files import File
from django.db import connection, transaction
from django.db.models import OuterRef
from django.utils import timezone
from PIL import Image

from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.models import Case, Deployment

from . import predictor
from .detector import detector_for
from .models import (
    DomainThresholds,
    ModelVersion,
    ModelVersionEvent,
    Prediction,
    StoredPrediction,
)
from .ood import FeatureDistance, Limits, StoredReason, ood_reasons

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


@dataclass(frozen=True)
class CheckedLearner:
    """An exported learner that loaded and predicted: its file, vocabulary and digest."""

    path: Path
    vocab: list[str]
    sha256: str


def learner_check(path: Path) -> CheckedLearner:
    """Prove that a file is an exported fastai learner that loads and predicts probabilities.
    Slow (it loads the model): call it outside any transaction."""
    if not path.is_file():
        raise ServiceError(f"no such file: {path}", field="path")
    try:
        learn = predictor.learner_load(str(path))
    except Exception as exc:  # any failure to unpickle means: not a usable learner
        raise ServiceError(f"the file is not a loadable fastai learner ({exc})",
                           field="path") from exc
    try:
        vocab = predictor.learner_vocab(learn)
    except AttributeError as exc:
        raise ServiceError("the file is not an exported fastai learner with a vocabulary",
                           field="path") from exc
    try:
        (probe,) = predictor.predict_images(learn, [_probe_image()])
    except Exception as exc:
        raise ServiceError(f"the learner loaded but failed a probe prediction ({exc})",
                           field="path") from exc
    if abs(sum(probe.probabilities.values()) - 1) > 1e-3:
        raise ServiceError("the learner's outputs are not probabilities (they do not sum to 1)",
                           field="path")
    return CheckedLearner(path=path, vocab=vocab, sha256=_sha256(path))


def model_version_register(
    *,
    deployment: Deployment,
    path: Path | None = None,
    checked: CheckedLearner | None = None,
    name: str,
    champion: bool = False,
    notes: str = "",
    actor: User | None = None,
) -> ModelVersion:
    """Register an exported fastai learner after proving that it loads and predicts (or one
    `learner_check` already proved).

    Its vocabulary must equal the deployment's label set. A new champion replaces the old one,
    which stays active as a challenger.
    """
    if not name.strip():
        raise ServiceError("a model version needs a name", field="name")
    if deployment.model_versions.filter(name=name).exists():
        raise Conflict(f"deployment {deployment.slug} already has a model version {name!r}",
                       field="name")
    if checked is None:
        if path is None:
            raise ServiceError("a model version needs its learner file", field="path")
        checked = learner_check(path)
    path, vocab, sha256 = checked.path, checked.vocab, checked.sha256
    missing = sorted(set(deployment.labels) - set(vocab))
    extra = sorted(set(vocab) - set(deployment.labels))
    if missing or extra:
        raise ServiceError(
            f"the learner's labels differ from deployment {deployment.slug}'s: "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}", field="labels")
    with transaction.atomic():
        if champion:
            _champion_demote(deployment=deployment, actor=actor,
                             reason=f"replaced by {name}")
        with path.open("rb") as file:
            version = ModelVersion(deployment=deployment, name=name, sha256=sha256, labels=vocab,
                                   is_champion=champion, notes=notes, created_by=actor)
            version.artifact.save(f"{deployment.slug}-{name}-{sha256[:12]}.pkl", File(file),
                                  save=False)
        version.save()
        ModelVersionEvent.objects.create(
            model_version=version, action=ModelVersionEvent.Action.REGISTERED, actor=actor,
            reason=f"registered as {'champion' if champion else 'challenger'}; sha256 {sha256}")
    logger.info("registered %s (sha256 %s)", version, sha256)
    return version


def _champion_demote(*, deployment: Deployment, actor: User | None, reason: str) -> None:
    for old in deployment.model_versions.select_for_update().filter(is_champion=True):
        old.is_champion = False
        old.save(update_fields=["is_champion"])
        ModelVersionEvent.objects.create(model_version=old, actor=actor, reason=reason,
                                         action=ModelVersionEvent.Action.DEMOTED)


def model_version_promote(*, version: ModelVersion, actor: User | None, reason: str
                          ) -> ModelVersion:
    """Make a challenger the champion (audited); the old champion stays on as a challenger."""
    if not reason.strip():
        raise ServiceError("promoting a model version needs a reason", field="reason")
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.is_champion:
            raise Conflict(f"{version.name} is already the champion")
        _champion_demote(deployment=version.deployment, actor=actor,
                         reason=f"{version.name} promoted: {reason}")
        version.is_champion = True
        version.is_active = True
        version.save(update_fields=["is_champion", "is_active"])
        ModelVersionEvent.objects.create(model_version=version, actor=actor, reason=reason,
                                         action=ModelVersionEvent.Action.PROMOTED)
    return version


def model_version_set_active(*, version: ModelVersion, active: bool, actor: User | None,
                             reason: str) -> ModelVersion:
    """Retire a challenger (it stops predicting) or bring it back (audited)."""
    if not reason.strip():
        raise ServiceError("this change needs a reason", field="reason")
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if version.is_champion and not active:
            raise Conflict("the champion cannot be retired; promote another version first")
        if version.is_active == active:
            return version
        version.is_active = active
        version.save(update_fields=["is_active"])
        action = (ModelVersionEvent.Action.REACTIVATED if active
                  else ModelVersionEvent.Action.RETIRED)
        ModelVersionEvent.objects.create(model_version=version, actor=actor, reason=reason,
                                         action=action)
    return version


def domain_thresholds_fit(*, deployment: Deployment, images: Sequence[bytes],
                          min_confidence: float | None = 0.5) -> DomainThresholds:
    """Set a deployment's input limits from images like those the model was trained on.

    Brightness may stray a quarter of the training range beyond its 1st-99th percentiles;
    contrast may fall to three quarters of its 1st percentile; images may have down to half the
    smallest training image's pixels.
    """
    if len(images) < 10:
        raise ServiceError("fitting domain thresholds needs at least 10 images", field="images")
    stats = [predictor.input_stats(image) for image in images]
    brightness = sorted(s.brightness for s in stats)
    contrast = sorted(s.contrast for s in stats)
    cut = statistics.quantiles(brightness, n=100)
    low, high = cut[0], cut[-1]
    spread = max(high - low, 1.0)
    thresholds, _ = DomainThresholds.objects.update_or_create(
        deployment=deployment,
        defaults={
            "min_brightness": max(0.0, low - spread / 4),
            "max_brightness": min(255.0, high + spread / 4),
            "min_contrast": statistics.quantiles(contrast, n=100)[0] * 0.75,
            "min_pixels": min(s.pixels for s in stats) // 2,
            "min_confidence": min_confidence,
        },
    )
    return thresholds


def _limits(thresholds: DomainThresholds | None) -> Limits:
    if thresholds is None:
        return Limits()
    return Limits(min_confidence=thresholds.min_confidence, max_entropy=thresholds.max_entropy,
                  min_brightness=thresholds.min_brightness,
                  max_brightness=thresholds.max_brightness,
                  min_contrast=thresholds.min_contrast, min_pixels=thresholds.min_pixels)


def _active_versions() -> dict[int, tuple[list[ModelVersion], Limits]]:
    """Every deployment's active model versions (champion first, each with its reference
    set's detector fit) and input limits, in one statement: a worker serves every deployment,
    and keeps the learners of all of them."""
    found: dict[int, tuple[list[ModelVersion], Limits]] = {}
    for version in (ModelVersion.objects.filter(is_active=True)
                    .select_related("deployment__domain_thresholds", "reference_set")
                    # read once per fit, when the worker builds the detector
                    .defer("reference_set__detector_calibration", "reference_set__by_label")
                    .order_by("deployment_id", "-is_champion", "name")):
        if version.deployment_id not in found:
            thresholds = getattr(version.deployment, "domain_thresholds", None)
            found[version.deployment_id] = ([], _limits(thresholds))
        found[version.deployment_id][0].append(version)
    return found


# Claims the locked cases in one statement: a case without a claim gets one, a stale claim is
# taken over (counting the attempt), a live one is left alone; the cases claimed come back.
# ON CONFLICT reads the newest committed claim, whenever the statement's snapshot was taken.
_CLAIMS_TAKE_SQL = """
    INSERT INTO inference_inferenceclaim (case_id, claimed_at, attempts)
    SELECT case_id, %(now)s, 1 FROM unnest(%(ids)s::bigint[]) AS claim (case_id)
    ON CONFLICT (case_id) DO UPDATE
        SET claimed_at = EXCLUDED.claimed_at,
            attempts = inference_inferenceclaim.attempts + 1
        WHERE inference_inferenceclaim.claimed_at < %(stale)s
    RETURNING case_id"""


def cases_claim(*, limit: int, case_ids: Sequence[int] | None = None,
                now: datetime | None = None) -> list[int]:
    """Claim up to `limit` received cases for prediction, oldest first (or only `case_ids`).

    A case already claimed by a live worker is skipped; one whose claim went stale is taken
    over, counting an attempt. Short transaction; SKIP LOCKED keeps workers out of each
    other's way on PostgreSQL.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.PREDICTION_STALE_SECONDS)
    with transaction.atomic():
        candidates = (Case.objects.select_for_update(skip_locked=True, of=("self",))
                      .filter(status=Case.Status.RECEIVED)
                      .exclude(inference_claim__claimed_at__gte=stale))
        if case_ids is not None:
            candidates = candidates.filter(pk__in=case_ids)
        ids = list(candidates.order_by("id").values_list("id", flat=True)[:limit])
        if not ids:
            return []
        # The statement above sees the claims as they were when it began: a worker that
        # claimed one of these cases and committed meanwhile has released its row lock
        # without changing the case row, so the case looked free. Claiming looks again:
        # ON CONFLICT sees every claim committed before it.
        with connection.cursor() as cursor:
            cursor.execute(_CLAIMS_TAKE_SQL, {"ids": ids, "now": now, "stale": stale})
            claimed = {case_id for (case_id,) in cursor.fetchall()}
    return [case_id for case_id in ids if case_id in claimed]


# Cases this process has routed lately: a job named for one of them (beat's sweep queues one
# per case, but batches take many cases at once) is answered without asking the database.
_recently_routed: OrderedDict[int, None] = OrderedDict()
_RECENT_MAX = 50_000


def recently_routed(case_id: int) -> bool:
    return case_id in _recently_routed


def _remember_routed(case_ids: Iterable[int]) -> None:
    for case_id in case_ids:
        _recently_routed[case_id] = None
    while len(_recently_routed) > _RECENT_MAX:
        _recently_routed.popitem(last=False)


@dataclass
class Predicted:
    """What `predictions_make` did: the cases still waiting, and the predictions it wrote
    (case id → model version id → prediction), so that routing need not read them back."""

    waiting: list[int]
    stored: dict[int, dict[int, StoredPrediction]] = field(default_factory=dict)


Predict = Callable[[ModelVersion, Sequence[Case]], list[predictor.Output]]
"""Stands in for the learners' forward pass: one version's outputs for a batch of cases, in
order (a simulation's answers). Everything around it is the worker's own path."""


def predictions_make(*, case_ids: Sequence[int], predict: Predict | None = None) -> Predicted:
    """Predict claimed cases with every active model version of their deployment, in one
    batch per version; returns the cases still waiting (`received`) and the predictions
    written.

    Models run outside any transaction. A failing model (load error, exception, time-out) is
    stored as a failed prediction with its reason and never blocks a case; so is a deployment
    whose predictions fail for another reason: the other deployments of the batch carry on.
    Versions that already predicted a case are skipped: a redelivered job changes nothing.
    After INFERENCE_MAX_ATTEMPTS claims of the same case (workers that died on it), the case
    gets failed predictions, so that humans decide it. `predict`, when given, answers instead
    of the learners (`Predict`).
    """
    # Each case with the versions that have predicted it already (`predicted_by`).
    cases = list(Case.objects.filter(pk__in=case_ids, status=Case.Status.RECEIVED)
                 .select_related("inference_claim")
                 .annotate(predicted_by=ArraySubquery(
                     Prediction.objects.filter(case_id=OuterRef("pk")).order_by()
                     .values("model_version_id"))))
    by_deployment: dict[int, list[Case]] = defaultdict(list)
    for case in cases:
        by_deployment[case.deployment_id].append(case)
    predicted = Predicted(waiting=[case.pk for case in cases])
    active = _active_versions()
    for deployment_id, group in by_deployment.items():
        versions, limits = active.get(deployment_id, ([], Limits()))
        try:
            _group_predict(group, versions, limits=limits, predicted=predicted, predict=predict)
        except SoftTimeLimitExceeded:
            raise
        except Exception as exc:  # one deployment's failure must not hold up the others
            logger.exception("predictions of deployment %s failed", deployment_id)
            _predictions_store(
                [_failed(c, v, f"{type(exc).__name__}: {exc}") for c in group for v in versions],
                predicted=predicted)
    # A worker serves every deployment: keep each learner still active anywhere.
    predictor.learners_forget_except(
        version.pk for versions, _ in active.values() for version in versions)
    return predicted


def claims_release(*, case_ids: Sequence[int]) -> None:
    """The cases are routed: drop their claims and remember them (see `recently_routed`)."""
    if case_ids:
        # One statement: nothing refers to a claim, so Django's deletion (a transaction
        # around it) has nothing to collect.
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM inference_inferenceclaim WHERE case_id = ANY(%s)",
                           [list(case_ids)])
    _remember_routed(case_ids)


@dataclass(frozen=True, slots=True)
class _Row:
    """A prediction to store, as the plain values of its columns."""

    case_id: int
    model_version_id: int
    status: str
    label: str = ""
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    entropy: float | None = None
    brightness: float | None = None
    contrast: float | None = None
    pixels: int | None = None
    out_of_domain: bool = False
    ood_reasons: list[StoredReason] = field(default_factory=list)
    features: str | None = None  # pgvector's text form, '[0.1,2.5,...]'
    ood_distance: float | None = None
    ood_percentile: float | None = None
    error: str = ""
    latency_ms: float | None = None


_ROW_COLUMNS = [f.name for f in fields(_Row)]
_JSON_COLUMNS = {"probabilities", "ood_reasons"}

# One statement, outside any transaction: the rows as column arrays; a row whose case and
# version already have a prediction is skipped (ON CONFLICT), and the rows written come back.
_PREDICTIONS_INSERT_SQL = """
    INSERT INTO inference_prediction (case_id, model_version_id, status, label, confidence,
                                      probabilities, entropy, brightness, contrast, pixels,
                                      out_of_domain, ood_reasons, features, ood_distance,
                                      ood_percentile, error, latency_ms, created_at)
    SELECT case_id, model_version_id, status, label, confidence, probabilities::jsonb, entropy,
           brightness, contrast, pixels, out_of_domain, ood_reasons::jsonb, features::vector,
           ood_distance, ood_percentile, error, latency_ms, %(now)s
    FROM unnest(%(case_id)s::bigint[], %(model_version_id)s::bigint[], %(status)s::text[],
                %(label)s::text[], %(confidence)s::float8[], %(probabilities)s::text[],
                %(entropy)s::float8[], %(brightness)s::float8[], %(contrast)s::float8[],
                %(pixels)s::integer[], %(out_of_domain)s::boolean[], %(ood_reasons)s::text[],
                %(features)s::text[], %(ood_distance)s::float8[], %(ood_percentile)s::float8[],
                %(error)s::text[], %(latency_ms)s::float8[])
         AS row (case_id, model_version_id, status, label, confidence, probabilities, entropy,
                 brightness, contrast, pixels, out_of_domain, ood_reasons, features,
                 ood_distance, ood_percentile, error, latency_ms)
    ON CONFLICT DO NOTHING
    RETURNING id, case_id, model_version_id, status, label, confidence, out_of_domain"""


def _predictions_store(rows: list[_Row], *, predicted: Predicted) -> None:
    """Write the rows (skipping any case and version that has a prediction already) and
    note those written in `predicted`."""
    if not rows:
        return
    # One array per column, named as the statement's parameters; JSON columns as text.
    columns: dict[str, list[Any]] = {
        name: [json.dumps(getattr(r, name)) if name in _JSON_COLUMNS else getattr(r, name)
               for r in rows]
        for name in _ROW_COLUMNS}
    with connection.cursor() as cursor:
        cursor.execute(_PREDICTIONS_INSERT_SQL, {**columns, "now": timezone.now()})
        written = cursor.fetchall()
    for pk, case_id, version_id, status, label, confidence, out_of_domain in written:
        predicted.stored.setdefault(case_id, {})[version_id] = StoredPrediction(
            id=pk, case_id=case_id, model_version_id=version_id,
            ok=status == Prediction.Status.OK, label=label, confidence=confidence,
            out_of_domain=out_of_domain)


def _group_predict(cases: list[Case], versions: list[ModelVersion], *, limits: Limits,
                   predicted: Predicted, predict: Predict | None = None) -> None:
    done = {(case.pk, version_id) for case in cases
            for version_id in case.predicted_by}  # type: ignore[attr-defined]
    images: dict[int, bytes] = {}
    stats: dict[int, predictor.InputStats] = {}
    failed: dict[int, str] = {}
    for case in cases:
        claim = getattr(case, "inference_claim", None)
        if claim is not None and claim.attempts > settings.INFERENCE_MAX_ATTEMPTS:
            failed[case.pk] = f"gave up after {claim.attempts - 1} attempts that did not finish"
            continue
        try:
            with case.image.open("rb") as file:
                images[case.pk] = file.read()
            stats[case.pk] = predictor.input_stats(images[case.pk])
        except OSError as exc:
            failed[case.pk] = f"the stored image could not be read ({exc})"
    for version in versions:
        todo = [c for c in cases if (c.pk, version.pk) not in done]
        rows = [_failed(c, version, failed[c.pk]) for c in todo if c.pk in failed]
        todo = [c for c in todo if c.pk not in failed]
        if todo:
            rows += _version_predict(todo, version, images, stats, limits, predict=predict)
        _predictions_store(rows, predicted=predicted)


def _failed(case: Case, version: ModelVersion, error: str) -> _Row:
    return _Row(case_id=case.pk, model_version_id=version.pk, status=Prediction.Status.FAILED,
                error=error[:2000])


def _version_predict(cases: list[Case], version: ModelVersion, images: dict[int, bytes],
                     stats: dict[int, predictor.InputStats], limits: Limits,
                     predict: Predict | None = None) -> list[_Row]:
    try:
        if predict is not None:
            outputs = predict(version, cases)
        else:
            learn = predictor.learner_for(version_id=version.pk, sha256=version.sha256,
                                          open_artifact=lambda: version.artifact.open("rb"))
            outputs = predictor.predict_images(learn, [images[c.pk] for c in cases])
    except SoftTimeLimitExceeded:
        logger.error("model version %s timed out on %d cases", version.pk, len(cases))
        return [_failed(c, version, f"timed out after {settings.INFERENCE_TIME_LIMIT}s")
                for c in cases]
    except Exception as exc:  # a broken model must not block cases: humans decide them
        logger.exception("model version %s failed on %d cases", version.pk, len(cases))
        return [_failed(c, version, f"{type(exc).__name__}: {exc}") for c in cases]
    distances = _feature_distances(version, outputs)
    rows = []
    for case, output, distance in zip(cases, outputs, distances, strict=True):
        s = stats[case.pk]
        reasons = ood_reasons(brightness=s.brightness, contrast=s.contrast, width=s.width,
                              height=s.height, confidence=output.confidence,
                              entropy=output.entropy, limits=limits, features=distance)
        rows.append(_Row(
            case_id=case.pk, model_version_id=version.pk, status=Prediction.Status.OK,
            label=output.label, confidence=output.confidence,
            probabilities=output.probabilities, entropy=output.entropy,
            latency_ms=output.latency_ms, brightness=s.brightness, contrast=s.contrast,
            pixels=s.pixels, out_of_domain=bool(reasons), ood_reasons=reasons,
            features=vector_text(output.features),
            ood_distance=None if distance is None else distance.distance,
            ood_percentile=None if distance is None else distance.percentile))
    return rows


_SEVEN_DIGITS = "{:.7g}".format


def vector_text(features: Any) -> str | None:
    """A feature row in pgvector's text form: seven significant digits, about what the
    column's float32 keeps (and a third of the time of exact `repr`s)."""
    if features is None:
        return None
    return "[" + ",".join(map(_SEVEN_DIGITS, features.tolist())) + "]"


def _feature_distances(version: ModelVersion, outputs: list[predictor.Output]
                       ) -> list[FeatureDistance | None]:
    """Each output's distance to the version's reference set, scored as one batch; None where
    the version has no fitted detector or the output no features."""
    rows = [output.features for output in outputs]
    if not rows or any(row is None for row in rows):
        return [None] * len(outputs)
    detector = detector_for(version)
    if detector is None:
        return [None] * len(outputs)
    return list(detector.score(np.stack(rows)))  # type: ignore[arg-type]  # no None left
