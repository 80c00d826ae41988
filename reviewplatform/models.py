"""Cases and their review: the schema and the invariants that hold for one row."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime

from django.conf import settings
from django.contrib.postgres.functions import RandomUUID
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.urls import reverse

from .reasons import ReviewReason


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"unknown time zone {value!r}") from exc


class ReviewMode(models.TextChoices):
    """What a reviewer is shown of the model's answer."""

    BLIND = "blind", "blind: the model's answer is hidden"
    ASSISTED = "assisted", "assisted: the model's answer and confidence are shown"
    REVEALED = "revealed", "blind, then revealed: answer blind, then see the model and revise"


class Deployment(models.Model):
    """One decision task being rolled out, with its label set and regions."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    labels = models.JSONField(help_text="the label set, in display order")
    urgent_labels = models.JSONField(
        default=list, blank=True,
        help_text="labels whose champion prediction makes a case urgent (expedited review)")
    review_mode = models.CharField(
        max_length=8, choices=ReviewMode.choices, default=ReviewMode.BLIND,
        help_text="how reviewers see the model's answer; audits, second opinions, escalations "
                  "are always blind")
    second_opinion_rate = models.FloatField(
        default=0.0, help_text="share of cases (0-1) that get a second blind review anyway")
    gold_rate = models.FloatField(
        default=0.0, help_text="share of claims (0-1) that serve a gold case instead")
    label_keys = models.JSONField(
        default=dict, blank=True,
        help_text='keys chosen for labels on the review page, e.g. {"grizzly": "g"}; other '
                  "labels: a one-character label is its own key, the rest take 1-9, 0")
    guidelines = models.TextField(
        blank=True, help_text="guidance for reviewers, in Markdown, shown on the review page "
                              "with example images per label from gold cases")
    image_retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="delete a case's image this many days after its decision (its decision, "
                  "reviews and statistics stay); empty keeps images")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(second_opinion_rate__gte=0, second_opinion_rate__lte=1),
                name="deployment_second_opinion_rate_in_unit_interval"),
            models.CheckConstraint(condition=models.Q(gold_rate__gte=0, gold_rate__lte=1),
                                   name="deployment_gold_rate_in_unit_interval"),
        ]

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
        urgent = self.urgent_labels
        if not isinstance(urgent, list) or not set(urgent) <= set(labels):
            raise ValidationError({"urgent_labels": "urgent labels must be among the labels"})


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
    # The deployments the key may submit cases to; a key without any submits nowhere.
    deployments = models.ManyToManyField(Deployment, related_name="api_keys")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Updated at most once a minute per key, so that using a key is not a write per request.
    last_used_at = models.DateTimeField(null=True, blank=True)

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
    image_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="when the image was deleted under retention")
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
        indexes = [
            models.Index(fields=["status", "updated_at"]),
            # A client's list (GET /api/v1/cases/): its cases, newest first, a cursor page at a
            # time, read backwards along this index.
            models.Index(fields=["submitted_by", "created_at", "id"],
                         name="case_submitted_by_created"),
        ]

    def __str__(self) -> str:
        return f"case {self.pk} ({self.external_id})"

    def get_absolute_url(self) -> str:
        """The case page (the admin's "view on site")."""
        return reverse("case-page", args=[self.pk])

    @property
    def captured_at_local(self) -> datetime:
        """Capture time in the region's own time zone: what scope rules and reviewers see."""
        return self.captured_at.astimezone(self.region.zone)


class ReviewTask(models.Model):
    """A case waiting for a human. Claimed with a lease; the lease token fences the answer."""

    Reason = ReviewReason

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        DONE = "done"

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="review_tasks")
    reason = models.CharField(max_length=24, choices=Reason.choices)
    urgent = models.BooleanField(
        default=False, help_text="the champion predicted one of the deployment's urgent labels")
    reason_rank = models.IntegerField(
        null=True, blank=True,
        help_text="the reason's priority (REVIEW_REASON_PRIORITY), higher first; empty until "
                  "the task is ranked")
    priority = models.IntegerField(
        default=0, help_text="a manual boost within the same urgency and reason; higher first")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    claimed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                   null=True, blank=True, related_name="claimed_tasks")
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    policy_version = models.ForeignKey("rollout.PolicyVersion", on_delete=models.PROTECT,
                                       related_name="review_tasks")
    rule = models.CharField(max_length=100, blank=True)
    audit_rate = models.FloatField(
        null=True, blank=True,
        help_text="an audit's sampling rate when it was drawn: the report weights it by 1/rate")
    follows = models.ForeignKey(
        "Review", on_delete=models.PROTECT, null=True, blank=True, related_name="follow_ups",
        help_text="for a second opinion or an escalation: the review whose answer it checks")
    blind_answer = models.CharField(
        max_length=100, blank=True,
        help_text="blind-then-reveal: the answer given before the model's answer was shown")
    pending_answer = models.CharField(
        max_length=100, blank=True,
        help_text="an answer given on the review page, stored once its undo window closes")
    pending_at = models.DateTimeField(null=True, blank=True,
                                      help_text="when the pending answer was given")
    pending_until = models.DateTimeField(
        null=True, blank=True, help_text="when the pending answer's undo window closes")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-urgent", "-reason_rank", "-priority", "created_at", "id"]
        permissions = [
            ("review_escalation", "Can decide cases escalated after a disagreement"),
            ("view_team_figures", "Can see every reviewer's figures"),
            ("mark_gold", "Can mark gold cases"),
        ]
        indexes = [
            # The queue: claim-next walks this index in serving order and stops at the first
            # row it may take, so its cost does not grow with the number of waiting tasks.
            models.Index(F("urgent").desc(), F("reason_rank").desc(nulls_last=True),
                         F("priority").desc(), "created_at", "id",
                         condition=Q(status="open"), name="reviewtask_queue_open"),
            # Overdue audits (AUDIT_SERVE_WITHIN_SECONDS): claim-next takes the oldest open audit
            # past its deadline, and the pages show how long the oldest one has waited.
            models.Index(fields=["created_at", "id"],
                         condition=Q(status="open", reason="audit"),
                         name="reviewtask_audit_open"),
            # Leases: the reviewer's own held task, and expired ones to take back.
            models.Index(fields=["claimed_by", "lease_expires_at"],
                         condition=Q(status="claimed"), name="reviewtask_claimed_by"),
            models.Index(fields=["lease_expires_at"], condition=Q(status="claimed"),
                         name="reviewtask_lease_expiry"),
            # Tasks created without a rank (see review_tasks_rank).
            models.Index(fields=["id"], condition=Q(reason_rank__isnull=True),
                         name="reviewtask_unranked"),
            models.Index(fields=["status", "completed_at"], name="reviewtask_status_done"),
            # Pending answers (review.pending): the sweep that stores them once due.
            models.Index(fields=["pending_until"], condition=Q(pending_until__isnull=False),
                         name="reviewtask_pending"),
            models.Index(fields=["created_at"], name="reviewtask_created"),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} for case {self.case_id} ({self.reason}, {self.status})"


class Review(models.Model):
    """One reviewer's answer for a case."""

    CANNOT_TELL = "cannot_tell"
    OUT_OF_DOMAIN = "out_of_domain"

    class Mode(models.TextChoices):
        BLIND = "blind"
        ASSISTED = "assisted"
        REVEALED = "revealed", "blind, then revealed"

    task = models.OneToOneField(ReviewTask, on_delete=models.CASCADE, related_name="review")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="reviews")
    answer = models.CharField(max_length=100, help_text="a label, cannot_tell or out_of_domain")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.BLIND)
    blind_answer = models.CharField(
        max_length=100, blank=True,
        help_text="mode revealed: the answer before the model's was shown (automation bias)")
    seconds = models.FloatField(help_text="seconds from claim to answer")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["case", "reviewer"], name="review_case_reviewer"),
            models.Index(fields=["reviewer", "created_at"], name="review_reviewer_created"),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} answered {self.answer} on case {self.case_id}"


class WithdrawnAnswer(models.Model):
    """An answer its reviewer took back within the undo window (REVIEW_UNDO_SECONDS), before
    it was stored: kept, so that every answer given on the review page leaves a trace."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE,
                             related_name="withdrawn_answers")
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="withdrawn_answers")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                 related_name="withdrawn_answers")
    answer = models.CharField(max_length=100)
    answered_at = models.DateTimeField(help_text="when the answer was given")
    withdrawn_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["withdrawn_at", "id"]

    def __str__(self) -> str:
        return f"{self.reviewer} withdrew {self.answer} on case {self.case_id}"


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


class CaseEvent(models.Model):
    """The outbox: what happened to a case that its client may be told, written in the same
    transaction as the change it tells of (a decision never exists without its event).

    `uid` becomes the webhook's `webhook-id`; `(case, type, version)` is unique, so that a
    change written twice cannot tell twice. `dispatched_at` is set once the event has been
    fanned out to the client's webhook endpoints."""

    class Type(models.TextChoices):
        QUEUED = "case.queued", "the case went to the review queue"
        DECIDED = "case.decided", "the case was decided"

    uid = models.UUIDField(default=uuid.uuid4, db_default=RandomUUID(), unique=True,
                           editable=False)
    type = models.CharField(max_length=32, choices=Type.choices)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    version = models.PositiveIntegerField(default=1, help_text="the nth event of this type")
    data = models.JSONField(default=dict, help_text="what changed, as it was at the change")
    created_at = models.DateTimeField(auto_now_add=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["case", "type", "version"],
                                               name="case_event_once_per_version")]
        indexes = [models.Index(fields=["id"], condition=Q(dispatched_at__isnull=True),
                                name="case_event_undispatched")]

    def __str__(self) -> str:
        return f"{self.type} (case {self.case_id}, v{self.version})"


class GoldCase(models.Model):
    """A case with a known answer, mixed into reviewers' queues to measure their accuracy."""

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="gold")
    label = models.CharField(max_length=100, help_text="the known answer")
    is_active = models.BooleanField(default=True)
    is_example = models.BooleanField(
        default=False, help_text="shown in the deployment's guidelines as an example of its "
                                 "label, and so never served as gold")
    marked_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                  null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"gold: case {self.case_id} is {self.label}"


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` and the first answer given to it, kept
    IDEMPOTENCY_KEY_HOURS. `status_code` is null while the first request is being processed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="idempotency_keys")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"],
                                               name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.status_code or 'in progress'})"
