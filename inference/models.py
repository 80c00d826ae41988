"""Model versions of a deployment and the predictions they make."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from reviewplatform.models import Case, Deployment


class ModelVersion(models.Model):
    """An exported fastai learner registered for a deployment.

    The artifact is a pickle that runs code when loaded: only administrators register one.
    """

    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT,
                                   related_name="model_versions")
    name = models.CharField(max_length=100)
    artifact = models.FileField(upload_to="models/")
    sha256 = models.CharField(max_length=64)
    labels = models.JSONField(help_text="the learner's vocabulary, in its own order")
    is_champion = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["deployment", "-is_champion", "name"]
        permissions = [
            ("register_modelversion",
             "Can register, promote and retire model versions (artifacts are pickles)"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "name"],
                                    name="model_version_name_unique"),
            models.UniqueConstraint(fields=["deployment"], condition=Q(is_champion=True),
                                    name="one_champion_per_deployment"),
            models.CheckConstraint(condition=Q(is_champion=False) | Q(is_active=True),
                                   name="champion_is_active"),
        ]

    def __str__(self) -> str:
        role = "champion" if self.is_champion else "challenger"
        return f"{self.deployment.slug}/{self.name} ({role})"


@dataclass(frozen=True, slots=True)
class StoredPrediction:
    """What routing reads of a stored prediction, as plain values (`ok` False: it failed)."""

    id: int
    case_id: int
    model_version_id: int
    ok: bool
    label: str
    confidence: float | None
    out_of_domain: bool


class PredictionQuerySet(models.QuerySet["Prediction"]):
    def champion(self) -> PredictionQuerySet:
        """The champion's answers: what routing, urgency and the review chain go by."""
        return self.filter(model_version__is_champion=True, status=Prediction.Status.OK)

    def champion_stored(self) -> list[StoredPrediction]:
        """The champion's answers among these, as plain values."""
        return [StoredPrediction(id=pk, case_id=case_id, model_version_id=version_id, ok=True,
                                 label=label, confidence=confidence, out_of_domain=ood)
                for pk, case_id, version_id, label, confidence, ood in self.champion()
                .order_by().values_list("id", "case_id", "model_version_id", "label",
                                        "confidence", "out_of_domain")]


class Prediction(models.Model):
    """One model version's output for one case. One per case and model version."""

    class Status(models.TextChoices):
        OK = "ok"
        FAILED = "failed"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT,
                                      related_name="predictions")
    status = models.CharField(max_length=8, choices=Status.choices)
    label = models.CharField(max_length=100, blank=True)
    confidence = models.FloatField(null=True, blank=True, help_text="the top probability")
    probabilities = models.JSONField(default=dict, blank=True, help_text="label -> probability")
    entropy = models.FloatField(null=True, blank=True, help_text="in nats")
    brightness = models.FloatField(null=True, blank=True, help_text="mean grey level, 0-255")
    contrast = models.FloatField(null=True, blank=True, help_text="grey level std, 0-255")
    pixels = models.PositiveIntegerField(null=True, blank=True, help_text="width x height")
    out_of_domain = models.BooleanField(default=False)
    ood_reasons = models.JSONField(
        default=list, blank=True,
        help_text='why the input looks out of domain: [{"code": OodReason, "text": words}]')
    # From the same forward pass as the label: the input of the model's last linear layer.
    features = VectorField(null=True, blank=True, help_text="the model's pooled features")
    ood_distance = models.FloatField(
        null=True, blank=True,
        help_text="Mahalanobis distance of the features to the reference set's nearest label")
    ood_percentile = models.FloatField(
        null=True, blank=True,
        help_text="share of held-out reference images nearer than this case, 0-100")
    error = models.TextField(blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PredictionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["case", "model_version"],
                                    name="one_prediction_per_case_and_version"),
        ]

    def __str__(self) -> str:
        if self.status == self.Status.FAILED:
            return f"case {self.case_id}: failed"
        return f"case {self.case_id}: {self.label} ({self.confidence:.2f})"


class DomainThresholds(models.Model):
    """A deployment's limits on input statistics and model uncertainty.

    A prediction outside any limit is flagged out of domain: the model never decides it alone.
    Empty limits are not checked.
    """

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE,
                                      related_name="domain_thresholds")
    min_confidence = models.FloatField(null=True, blank=True,
                                       help_text="below this top probability: out of domain")
    max_entropy = models.FloatField(null=True, blank=True, help_text="in nats")
    min_brightness = models.FloatField(null=True, blank=True)
    max_brightness = models.FloatField(null=True, blank=True)
    min_contrast = models.FloatField(null=True, blank=True)
    min_pixels = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "domain thresholds"

    def __str__(self) -> str:
        return f"domain thresholds of {self.deployment.slug}"


class ModelVersionEvent(models.Model):
    """The audit log of model versions: registration, promotion, retirement."""

    class Action(models.TextChoices):
        REGISTERED = "registered"
        PROMOTED = "promoted", "promoted to champion"
        DEMOTED = "demoted", "demoted to challenger"
        RETIRED = "retired", "retired (no longer predicts)"
        REACTIVATED = "reactivated"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE,
                                      related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                              blank=True, related_name="+")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.model_version}: {self.action}"


class InferenceClaim(models.Model):
    """A worker's claim on a received case while it predicts it, so that each case is
    predicted in one batch by one worker. A claim older than PREDICTION_STALE_SECONDS belongs
    to a worker that died: the case can be claimed again, counting the attempt."""

    case = models.OneToOneField(Case, on_delete=models.CASCADE, primary_key=True,
                                related_name="inference_claim")
    claimed_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=1)

    def __str__(self) -> str:
        return f"claim on case {self.case_id} (attempt {self.attempts})"


class ReferenceSet(models.Model):
    """Images like those a model version was trained on, kept to judge what it is shown
    against: the input limits are fitted from them, and so is the out-of-domain detector on
    the model's features (`inference.detector`): its threshold keeps 95% of the reference
    images, each held out of the fit in turn, whose distances (`detector_calibration`) turn a
    case's distance into a percentile."""

    class Origin(models.TextChoices):
        UPLOAD = "upload", "uploaded at registration (one folder per label)"
        REVIEWS = "reviews", "the first cases reviewers decided in domain"

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE,
                                         related_name="reference_set")
    origin = models.CharField(max_length=8, choices=Origin.choices)
    size = models.PositiveIntegerField()
    by_label = models.JSONField(help_text="images per label")
    created_at = models.DateTimeField(auto_now_add=True)
    detector_threshold = models.FloatField(
        null=True, blank=True, help_text="farther than this: out of domain (None: not fitted)")
    detector_calibration = models.JSONField(
        default=list, blank=True, help_text="distances of the held-out images, ascending")
    detector_sha256 = models.CharField(
        max_length=64, blank=True, help_text="the artifact whose features were fitted")
    detector_fitted_at = models.DateTimeField(null=True, blank=True)
    detector_error = models.TextField(blank=True, help_text="why no detector could be fitted")

    def __str__(self) -> str:
        return f"reference set of {self.model_version} ({self.size} images, {self.origin})"


class ReferenceImage(models.Model):
    reference_set = models.ForeignKey(ReferenceSet, on_delete=models.CASCADE,
                                      related_name="images")
    label = models.CharField(max_length=100)
    image = models.FileField(upload_to="references/")
    features = VectorField(null=True, blank=True,
                           help_text="the model version's features of this image")
    fold = models.PositiveSmallIntegerField(
        null=True, blank=True,
        help_text="held out of the detector's fit with this fold, to calibrate its threshold")

    def __str__(self) -> str:
        return f"{self.label}: {self.image.name}"
