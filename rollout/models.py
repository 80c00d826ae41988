"""Rollout policies: every change is a new immutable version, and that history is the audit log."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from reviewplatform.models import Deployment


class Stage(models.TextChoices):
    SHADOW = "shadow", "shadow: the model only watches"
    LIMITED = "limited", "limited scope"
    EXPANDING = "expanding", "expanding scope"
    FULL = "full", "full"
    PAUSED = "paused", "paused: every case goes to humans"


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
