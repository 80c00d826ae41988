"""Out-of-domain checks: a pure function of an input's statistics, the model's output and a
deployment's thresholds. Confidence alone is no guard: a model can be sure and wrong on a
night-time or low-resolution image, so the input itself is checked too."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    min_confidence: float | None = None
    max_entropy: float | None = None
    min_brightness: float | None = None
    max_brightness: float | None = None
    min_contrast: float | None = None
    min_pixels: int | None = None


def ood_reasons(*, brightness: float, contrast: float, width: int, height: int,
                confidence: float | None, entropy: float | None, limits: Limits) -> list[str]:
    """Why the input looks unlike the training data, in words; empty when it looks in domain."""
    reasons = []
    if limits.min_brightness is not None and brightness < limits.min_brightness:
        reasons.append(f"dark image (mean brightness {brightness:.0f} < "
                       f"{limits.min_brightness:.0f})")
    if limits.max_brightness is not None and brightness > limits.max_brightness:
        reasons.append(f"overexposed image (mean brightness {brightness:.0f} > "
                       f"{limits.max_brightness:.0f})")
    if limits.min_contrast is not None and contrast < limits.min_contrast:
        reasons.append(f"low contrast ({contrast:.0f} < {limits.min_contrast:.0f})")
    if limits.min_pixels is not None and width * height < limits.min_pixels:
        reasons.append(f"low resolution ({width}x{height} = {width * height} px < "
                       f"{limits.min_pixels} px)")
    if (limits.min_confidence is not None and confidence is not None
            and confidence < limits.min_confidence):
        reasons.append(f"uncertain model (top probability {confidence:.2f} < "
                       f"{limits.min_confidence:.2f})")
    if limits.max_entropy is not None and entropy is not None and entropy > limits.max_entropy:
        reasons.append(f"spread-out prediction (entropy {entropy:.2f} > "
                       f"{limits.max_entropy:.2f} nats)")
    return reasons
