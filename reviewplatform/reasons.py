"""Why a case waits for a human: the review task's reason.

Defined apart from the models so that pure code (routing, replays, benchmarks) can name a
reason without loading the app registry; `ReviewTask.Reason` is this class.
"""

from __future__ import annotations

from django.db import models


class ReviewReason(models.TextChoices):
    SHADOW = "shadow", "shadow stage: every case is reviewed"
    OUT_OF_SCOPE = "out_of_scope", "outside the model's scope"
    LOW_CONFIDENCE = "low_confidence", "model not confident enough"
    OUT_OF_DOMAIN = "out_of_domain", "image looks unlike the training data"
    MODEL_FAILED = "model_failed", "the model could not predict"
    ROUTING_FAILED = "routing_failed", "the case could not be routed automatically"
    PAUSED = "paused", "automation paused"
    AUDIT = "audit", "audit sample of a model decision"
    SECOND_OPINION = "second_opinion", "second opinion: an independent review"
    ESCALATION = "escalation", "two reviewers disagreed: a senior reviewer decides"
    GOLD = "gold", "gold case with a known answer"
