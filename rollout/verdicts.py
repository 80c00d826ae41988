"""The verdict of a check on an agreement (a guardrail cell, a widening's evidence gate).

Both read the sequential tests of `rollout.sequential`: a verdict is "pass" only with proof
that agreement is above the floor, "fail" only with evidence that it is below, and
"inconclusive" otherwise; thin evidence is never a pass and never a fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from django.db import models

from .sequential import AuditRates, SequentialTest

EVIDENCE_CAP = 1e9
"""Evidence above this reads "more than 1,000,000,000": the largest limit a policy may set."""


def evidence_words(value: float) -> str:
    """An e-value (or a limit on one) as people read it: three significant digits with
    thousands separators, never an exponent, e.g. "0.42", "38.5", "1,000", "199,000,000",
    "more than 1,000,000,000". Alerts and JSON keep the number itself."""
    if value > EVIDENCE_CAP:
        return f"more than {EVIDENCE_CAP:,.0f}"
    if value < 0.01:
        return "less than 0.01"
    rounded = float(f"{value:.3g}")
    return f"{rounded:,.0f}" if rounded >= 1000 else f"{rounded:g}"


class Verdict(models.TextChoices):
    PASS = "pass"  # noqa: S105
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


def agreement_test(settings: dict[str, Any]) -> SequentialTest:
    """The sequential test a policy's guardrail settings describe."""
    return SequentialTest(floor=float(settings["agreement_floor"]),
                          pause_evidence=float(settings["pause_evidence"]),
                          proof_evidence=float(settings["proof_evidence"]))


def audit_rates_for(settings: dict[str, Any], *, base: float) -> AuditRates:
    """The adaptive audit rates a policy's guardrail settings describe around its rate."""
    return AuditRates.around(base, high=float(settings["audit_rate_max"]),
                             adaptive=bool(settings["audit_adaptive"]))


@dataclass(frozen=True)
class GateVerdict:
    verdict: Verdict
    pass_evidence: float
    fail_evidence: float
    to_prove: int | None  # more answers at the rate seen that would prove it; None: never


def gate_verdict(test: SequentialTest, *, n: int, agreed: int, min_sample: int) -> GateVerdict:
    """The evidence gate on the answers of an added scope (their order does not matter)."""
    proof = float(test.pass_log_evidence(n, agreed))
    below = float(test.below_log_evidence(n, agreed))
    if below >= test.log_proof:
        verdict = Verdict.FAIL
    elif proof >= test.log_proof and n >= min_sample:
        verdict = Verdict.PASS
    else:
        verdict = Verdict.INCONCLUSIVE
    more = test.answers_to_prove(n, agreed)
    if more is not None and verdict != Verdict.FAIL:
        more = max(more, min_sample - n, 0)
    return GateVerdict(verdict=verdict, pass_evidence=_exp(proof), fail_evidence=_exp(below),
                       to_prove=None if verdict == Verdict.FAIL else more)


def _exp(value: float) -> float:
    return math.exp(min(value, 700.0))
