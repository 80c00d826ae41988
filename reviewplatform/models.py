"""Cases and their review: the schema and the invariants that hold for one row."""

from __future__ import annotations

import zoneinfo
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {value!r}") from exc


class Deployment(models.Model):
    """One decision task being rolled out, with its label set and regions."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    labels = models.JSONField(help_text="the label set, in display order")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        labels = self.labels
        if (
            not isinstance(labels, list)
            or not labels
            or not all(isinstance(label, str) and label for label in labels)
        ):
            raise ValidationError({"labels": "labels must be a non-empty list of strings"})
        if len(set(labels)) != len(labels):
            raise ValidationError({"labels": "labels must be unique"})


class Region(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="regions")
    code = models.SlugField()
    name = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, validators=[validate_timezone])

    class Meta:
        ordering = ["deployment", "code"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "code"], name="region_code_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.timezone})"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class ApiKey(models.Model):
    """A key an API client sends as `Authorization: Api-Key <key>`; only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, unique=True)
    hashed_key = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class Case(models.Model):
    class Status(models.TextChoices):
        RECEIVED = "received", "received: waiting for predictions"
        IN_REVIEW = "in_review", "in review"
        DECIDED = "decided", "decided"

    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT, related_name="cases")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="cases")
    external_id = models.CharField(max_length=200)
    image = models.ImageField(upload_to="cases/%Y/%m/%d/", width_field="width",
                              height_field="height")
    image_sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    captured_at = models.DateTimeField(help_text="capture time, stored in UTC")
    metadata = models.JSONField(default=dict, blank=True)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                     related_name="submitted_cases")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "external_id"],
                                    name="case_external_id_unique"),
        ]
        indexes = [models.Index(fields=["status", "updated_at"])]

    def __str__(self) -> str:
        return f"case {self.pk} ({self.external_id})"

    @property
    def captured_at_local(self) -> datetime:
        """Capture time in the region's own time zone: what scope rules and reviewers see."""
        return self.captured_at.astimezone(self.region.zone)


class ReviewTask(models.Model):
    """A case waiting for a human. Claimed with a lease; the lease token fences the answer."""

    class Reason(models.TextChoices):
        SHADOW = "shadow", "shadow stage: every case is reviewed"
        OUT_OF_SCOPE = "out_of_scope", "outside the model's scope"
        LOW_CONFIDENCE = "low_confidence", "model not confident enough"
        OUT_OF_DOMAIN = "out_of_domain", "image looks unlike the training data"
        MODEL_FAILED = "model_failed", "the model could not predict"
        PAUSED = "paused", "automation paused"
        AUDIT = "audit", "audit sample of a model decision"
        SECOND_OPINION = "second_opinion", "second opinion"

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        DONE = "done"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="review_tasks")
    reason = models.CharField(max_length=24, choices=Reason.choices)
    priority = models.IntegerField(default=0, help_text="higher is served first")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   null=True, blank=True, related_name="claimed_tasks")
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    policy_version = models.ForeignKey("rollout.PolicyVersion", on_delete=models.PROTECT,
                                       related_name="review_tasks")
    rule = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [models.Index(fields=["status", "-priority", "created_at"])]

    def __str__(self) -> str:
        return f"task {self.pk} for case {self.case_id} ({self.reason}, {self.status})"


class Review(models.Model):
    """One reviewer's answer for a case."""

    CANNOT_TELL = "cannot_tell"
    OUT_OF_DOMAIN = "out_of_domain"

    class Mode(models.TextChoices):
        BLIND = "blind"
        ASSISTED = "assisted"

    task = models.OneToOneField(ReviewTask, on_delete=models.CASCADE, related_name="review")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="reviews")
    answer = models.CharField(max_length=100, help_text="a label, cannot_tell or out_of_domain")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.BLIND)
    seconds = models.FloatField(help_text="seconds from claim to answer")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.reviewer} answered {self.answer} on case {self.case_id}"


class Decision(models.Model):
    """The one final outcome for a case. One per case, enforced by the database."""

    class Source(models.TextChoices):
        HUMAN = "human"
        MODEL = "model"

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="decision")
    label = models.CharField(max_length=100)
    source = models.CharField(max_length=8, choices=Source.choices)
    policy_version = models.ForeignKey("rollout.PolicyVersion", on_delete=models.PROTECT,
                                       related_name="decisions")
    rule = models.CharField(max_length=100, blank=True)
    review = models.OneToOneField(Review, on_delete=models.PROTECT, null=True, blank=True,
                                  related_name="decision")
    prediction = models.ForeignKey("inference.Prediction", on_delete=models.PROTECT, null=True,
                                   blank=True, related_name="decisions")
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-decided_at"]

    def __str__(self) -> str:
        return f"case {self.case_id}: {self.label} ({self.source})"
