"""The verdict of a check on an agreement (a guardrail cell, a widening's evidence gate).

One rule for both: fewer than the minimum sample is inconclusive, never a pass; otherwise the
Wilson 95% lower bound of the agreement must reach the floor.
"""

from __future__ import annotations

from django.db import models

from reviewplatform.stats import Proportion


class Verdict(models.TextChoices):
    PASS = "pass"  # noqa: S105
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def verdict_for(share: Proportion, *, floor: float, min_sample: int) -> Verdict:
    if share.n < min_sample:
        return Verdict.INCONCLUSIVE
    if (share.low or 0.0) < floor:
        return Verdict.FAIL
    return Verdict.PASS
