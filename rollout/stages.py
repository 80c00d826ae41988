"""The stages of a rollout policy.

Defined apart from the models so that the pure scope and routing code can name a stage
without loading the app registry; `rollout.models.Stage` is this class.
"""

from __future__ import annotations

from django.db import models


class Stage(models.TextChoices):
    SHADOW = "shadow", "shadow: the model only watches"
    LIMITED = "limited", "limited scope"
    EXPANDING = "expanding", "expanding scope"
    FULL = "full", "full"
    PAUSED = "paused", "paused: every case goes to humans"
