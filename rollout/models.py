"""Rollout policies: every change is a new immutable version, and that history is the audit log."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from reviewplatform.models import Deployment

from .stages import Stage

GUARDRAIL_DEFAULTS: dict[str, float | int] = {
    # agreement of human answers with the model's, per scope cell (rule x region), counted
    # since the cell's scope was published (rollout.sequential; docs/guardrails.md)
    "agreement_floor": 0.85,   # the agreement a cell must keep
    "pause_evidence": 1000,    # pause at this e-value against "at or above the floor": a cell
                               # at the floor runs at least this many answers, on average,
                               # before a mistaken pause
    "proof_evidence": 40,      # proof of agreement above the floor: e-value 1/alpha (2.5%)
    "min_sample": 30,          # the evidence gate also wants at least this many answers
    # out-of-domain share of a cell's cases against its region's shadow-stage share
    "ood_rate_factor": 3.0,    # the share allowed: factor x baseline ...
    "ood_rate_margin": 0.05,   # ... and at least baseline + margin (a zero baseline is not a
                               # hair trigger); the same sequential test watches it
    "ood_min_cases": 30,       # a region's baseline needs this many shadow-stage cases
    # the adaptive audit rate: the policy's audit rate once a cell's agreement is proven,
    # 4x it while the evidence is thin, audit_rate_max while answers lean towards failure
    "audit_adaptive": 1,
    "audit_rate_max": 1.0,
    # evidence for a widening
    "replay_days": 14,
}
RETIRED_GUARDRAIL_SETTINGS = frozenset({"window_days"})
"""Settings of an earlier guardrail that stored versions may still carry; dropped on publish."""


class ChangeKind(models.TextChoices):
    PUBLISH = "publish"
    PAUSE = "pause"
    ROLLBACK = "rollback"
    GUARDRAIL = "guardrail", "guardrail pause"
    SCHEDULED = "scheduled", "scheduled change"


class PolicyVersion(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT,
                                   related_name="policy_versions")
    version = models.PositiveIntegerField()
    stage = models.CharField(max_length=12, choices=Stage.choices, default=Stage.SHADOW)
    rules = models.JSONField(default=list, blank=True,
                             help_text="scope rules: conditions ANDed within a rule, rules ORed")
    confidence_threshold = models.FloatField(default=0.9)
    audit_rate = models.FloatField(default=0.05)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                               blank=True, related_name="+")
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    paused_cells = models.JSONField(
        default=list, blank=True,
        help_text="[rule, region] pairs where a guardrail paused automation")
    guardrails = models.JSONField(default=dict, blank=True,
                                  help_text="overrides of GUARDRAIL_DEFAULTS")
    kind = models.CharField(max_length=12, choices=ChangeKind.choices,
                            default=ChangeKind.PUBLISH)
    copied_from = models.PositiveIntegerField(null=True, blank=True,
                                              help_text="the version a rollback copied")
    override_reason = models.TextField(
        blank=True, help_text="why a widening was published although its evidence gate failed")
    evidence = models.JSONField(default=dict, blank=True,
                                help_text="the evidence seen when this version was published")

    class Meta:
        ordering = ["deployment", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["deployment", "version"],
                                    name="policy_version_unique"),
            models.CheckConstraint(
                condition=models.Q(confidence_threshold__gte=0, confidence_threshold__lte=1),
                name="policy_threshold_in_unit_interval",
            ),
            models.CheckConstraint(condition=models.Q(audit_rate__gte=0, audit_rate__lte=1),
                                   name="policy_audit_rate_in_unit_interval"),
        ]

    def __str__(self) -> str:
        return f"{self.deployment.slug} v{self.version} ({self.stage})"

    @property
    def guardrail_settings(self) -> dict[str, float | int]:
        return {**GUARDRAIL_DEFAULTS, **(self.guardrails or {})}

    def spec(self) -> dict[str, Any]:
        """The policy as plain values: what scope evaluation, diffs and replays read."""
        return {
            "stage": self.stage, "rules": list(self.rules),
            "confidence_threshold": self.confidence_threshold, "audit_rate": self.audit_rate,
            "paused_cells": [list(c) for c in self.paused_cells],
            "guardrails": dict(self.guardrails or {}),
        }


class CellAuditRate(models.Model):
    """The audit rate the guardrail set for a cell of a policy version at its last check: the
    router uses it while that version is current (otherwise the thin-evidence rate)."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    policy_version = models.ForeignKey("PolicyVersion", on_delete=models.CASCADE,
                                       related_name="+")
    rule = models.CharField(max_length=100)
    region = models.CharField(max_length=50)
    rate = models.FloatField()
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["deployment", "rule", "region"],
                                    name="cell_audit_rate_unique"),
            models.CheckConstraint(condition=models.Q(rate__gte=0, rate__lte=1),
                                   name="cell_audit_rate_in_unit_interval"),
        ]

    def __str__(self) -> str:
        return f"{self.rule} in {self.region}: audit {self.rate:.0%}"


class ScheduledChange(models.Model):
    """A policy to publish at a future time, if its evidence gate still passes then."""

    class Status(models.TextChoices):
        PENDING = "pending"
        PUBLISHED = "published"
        HELD = "held", "held: the evidence gate failed"
        CANCELLED = "cancelled"

    deployment = models.ForeignKey(Deployment, on_delete=models.PROTECT,
                                   related_name="scheduled_changes")
    effective_at = models.DateTimeField()
    stage = models.CharField(max_length=12, choices=Stage.choices)
    rules = models.JSONField(default=list, blank=True)
    confidence_threshold = models.FloatField()
    audit_rate = models.FloatField()
    guardrails = models.JSONField(default=dict, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True,
                               blank=True, related_name="+")
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_note = models.TextField(blank=True)
    published_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, null=True,
                                          blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["effective_at"]
        indexes = [models.Index(fields=["status", "effective_at"])]

    def __str__(self) -> str:
        return f"{self.deployment.slug}: {self.stage} at {self.effective_at:%Y-%m-%d %H:%M} UTC"


class Alert(models.Model):
    """An alert as it was sent to the admins (`rollout.alerts.admins_alert`), kept for the
    in-app list: guardrail pauses and held changes with their figures, stuck cases, failing
    model versions, webhook deliveries that failed for good."""

    event = models.CharField(max_length=40, help_text="what happened, as the payload's event")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, null=True, blank=True,
                                   related_name="alerts")
    subject = models.CharField(max_length=300)
    body = models.TextField()
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["created_at"], name="alert_created"),
                   models.Index(fields=["deployment", "created_at"], name="alert_deployment")]

    def __str__(self) -> str:
        return self.subject


class Adjudication(models.Model):
    """A senior reviewer's ruling on a case where the model and the human decision differ.

    The historical Decision is never changed: this row is the audit record (who, when, why),
    and the retraining export takes the newest adjudicated label of a case.
    """

    case = models.ForeignKey("reviewplatform.Case", on_delete=models.CASCADE,
                             related_name="adjudications")
    label = models.CharField(max_length=100)
    decision_label = models.CharField(max_length=100,
                                      help_text="the decision's label when adjudicated")
    model_label = models.CharField(max_length=100, blank=True,
                                   help_text="the champion's answer when adjudicated")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                              related_name="+")
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["case", "-created_at"], name="adjudication_case_newest")]

    def __str__(self) -> str:
        return f"case {self.case_id} adjudicated {self.label}"


# -- the report's pre-counted figures (PostgreSQL) ----------------------------------------------

class ReportKind(models.IntegerChoices):
    """What a report fact counts, and so which of its dimensions are set."""

    VOLUME = 1, "a decision, by local hour: region, day, local day and hour, policy, reason, source"
    DECISION = 2, "a decision, by label: region, day, policy, reason, source, rule, label"
    MODEL = 3, ("an OK prediction on a decided case, by local hour: the VOLUME dimensions, model, "
                "compared, agreed, out of domain; valued and total: confidence")
    CONFUSION = 4, ("an OK prediction on a human decision with a label: region, day, policy, "
                    "reason, model, label (human), other label (model), confidence bin")
    PAIR = 5, ("two models' OK predictions on such a decision: region, day, policy, reason, "
               "model, other model, agreed, other agreed")
    AUDIT = 6, ("an audit review of a model decision: region, day, the task's policy, agreed, "
                 "bin (its sampling rate in 1/10,000; NULL: the policy's rate)")
    SECOND = 7, "a second opinion: region, day, label (the review it checks), other label (its own)"
    TASK = 8, ("a done review task other than gold: region, day, reason, waiting-time bin; "
               "valued and total: the review's seconds")
    INPUT = 9, ("an OK prediction on any case, decided or not: region, day, local day, model, "
                "out of domain; valued and total: confidence")


class ReportCounted(models.Model):
    """The dimensions and measures shared by report facts and their rollup.

    `day` is the capture date in the server's time zone (what the report's period filters);
    `local_day` and `hour` are the capture's wall time in the case's own region. NULL is "not
    a dimension of this kind", apart from an empty value (a decision's rule may be "").
    """

    kind = models.PositiveSmallIntegerField(choices=ReportKind.choices)
    deployment_id = models.BigIntegerField()
    region_id = models.BigIntegerField()
    day = models.DateField()
    local_day = models.DateField(null=True)
    hour = models.PositiveSmallIntegerField(null=True)
    policy_version_id = models.BigIntegerField(null=True)
    reason = models.CharField(max_length=24, null=True)  # noqa: DJ001
    source = models.CharField(max_length=8, null=True)  # noqa: DJ001
    rule = models.CharField(max_length=100, null=True)  # noqa: DJ001
    model_version_id = models.BigIntegerField(null=True)
    other_version_id = models.BigIntegerField(null=True)
    label = models.CharField(max_length=100, null=True)  # noqa: DJ001
    other_label = models.CharField(max_length=100, null=True)  # noqa: DJ001
    bin = models.SmallIntegerField(null=True)
    compared = models.BooleanField(null=True)
    agreed = models.BooleanField(null=True)
    other_agreed = models.BooleanField(null=True)
    ood = models.BooleanField(null=True)
    n = models.BigIntegerField()
    valued = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0)

    DIMENSIONS = ("kind", "deployment_id", "region_id", "day", "local_day", "hour",
                  "policy_version_id", "reason", "source", "rule", "model_version_id",
                  "other_version_id", "label", "other_label", "bin", "compared", "agreed",
                  "other_agreed", "ood")
    MEASURES = ("n", "valued", "total")

    class Meta:
        abstract = True


class ReportFact(ReportCounted):
    """What one case contributes to the rollup, as last folded: a fold takes these back out
    before adding the case's new facts, so folding a case again is harmless."""

    case_id = models.BigIntegerField(db_index=True)
    captured = models.DateTimeField()

    def __str__(self) -> str:
        return f"case {self.case_id}: {self.get_kind_display()} x{self.n}"


class ReportRollup(ReportCounted):
    """The sum of the facts, one row per distinct set of dimensions: what the report reads."""

    first = models.DateTimeField(null=True, help_text="the earliest capture counted here")
    last = models.DateTimeField(null=True, help_text="the latest capture counted here")

    class Meta:
        constraints = [models.UniqueConstraint(fields=ReportCounted.DIMENSIONS,
                                               nulls_distinct=False, name="reportrollup_key")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} x{self.n}"


class ReportPending(models.Model):
    """A case written since it was last folded (set by database triggers on its decision,
    predictions, reviews and finished tasks)."""

    id = models.BigAutoField(primary_key=True)
    case_id = models.BigIntegerField()

    def __str__(self) -> str:
        return f"case {self.case_id} pending"
