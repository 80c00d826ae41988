"""Out-of-domain checks: a pure function of an input's statistics, the model's output and a
deployment's thresholds. Confidence alone is no guard: a model can be sure and wrong on a
night-time or low-resolution image, so the input itself is checked too.

Each reason is stored on the prediction as `{"code": ..., "text": ...}`: the code says which
check failed (readers test the code, never the words), the text says it with its figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypedDict

from django.db import models


class OodReason(models.TextChoices):
    """Which check an input failed; the label is the reason without its figures."""

    TOO_DARK = "too_dark", "dark image"
    TOO_BRIGHT = "too_bright", "overexposed image"
    LOW_CONTRAST = "low_contrast", "low contrast"
    LOW_RESOLUTION = "low_resolution", "low resolution"
    UNCERTAIN = "uncertain", "uncertain model"
    SPREAD_OUT = "spread_out", "spread-out prediction"
    UNLIKE_REFERENCE = "unlike_reference", "unlike the images this model was trained on"
    OTHER = "other", "other"


# Read from the model's own output: a blind reviewer sees these without their figures.
MODEL_OUTPUT_REASONS = frozenset({OodReason.UNCERTAIN, OodReason.SPREAD_OUT})


class StoredReason(TypedDict):
    code: str
    text: str


@dataclass(frozen=True)
class Limits:
    min_confidence: float | None = None
    max_entropy: float | None = None
    min_brightness: float | None = None
    max_brightness: float | None = None
    min_contrast: float | None = None
    min_pixels: int | None = None


@dataclass(frozen=True)
class FeatureDistance:
    """How far a case's features lie from the model version's reference images."""

    distance: float
    percentile: float  # share of held-out reference images nearer, 0-100
    threshold: float  # farther than this: out of domain


def _reason(code: OodReason, figures: str) -> StoredReason:
    return {"code": code.value, "text": f"{code.label} ({figures})"}


def _farther_than(percentile: float) -> str:
    if percentile >= 100:
        return "all of them"
    # Floored, so that "99.9%" never reads as more than it is.
    return f"{math.floor(percentile * 10) / 10:.1f}% of them"


def ood_reasons(*, brightness: float, contrast: float, width: int, height: int,
                confidence: float | None, entropy: float | None, limits: Limits,
                features: FeatureDistance | None = None) -> list[StoredReason]:
    """Why the input looks unlike the training data; empty when it looks in domain."""
    reasons: list[StoredReason] = []
    if features is not None and features.distance > features.threshold:
        reasons.append({"code": OodReason.UNLIKE_REFERENCE.value, "text": (
            f"{OodReason.UNLIKE_REFERENCE.label}: farther than "
            f"{_farther_than(features.percentile)} (distance {features.distance:.1f} > "
            f"{features.threshold:.1f})")})
    if limits.min_brightness is not None and brightness < limits.min_brightness:
        reasons.append(_reason(OodReason.TOO_DARK, f"mean brightness {brightness:.0f} < "
                                                   f"{limits.min_brightness:.0f}"))
    if limits.max_brightness is not None and brightness > limits.max_brightness:
        reasons.append(_reason(OodReason.TOO_BRIGHT, f"mean brightness {brightness:.0f} > "
                                                     f"{limits.max_brightness:.0f}"))
    if limits.min_contrast is not None and contrast < limits.min_contrast:
        reasons.append(_reason(OodReason.LOW_CONTRAST,
                               f"{contrast:.0f} < {limits.min_contrast:.0f}"))
    if limits.min_pixels is not None and width * height < limits.min_pixels:
        reasons.append(_reason(OodReason.LOW_RESOLUTION, f"{width}x{height} = {width * height}"
                                                         f" px < {limits.min_pixels} px"))
    if (limits.min_confidence is not None and confidence is not None
            and confidence < limits.min_confidence):
        reasons.append(_reason(OodReason.UNCERTAIN, f"top probability {confidence:.2f} < "
                                                    f"{limits.min_confidence:.2f}"))
    if limits.max_entropy is not None and entropy is not None and entropy > limits.max_entropy:
        reasons.append(_reason(OodReason.SPREAD_OUT, f"entropy {entropy:.2f} > "
                                                     f"{limits.max_entropy:.2f} nats"))
    return reasons

