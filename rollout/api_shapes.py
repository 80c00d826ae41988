"""The shapes of the staff rollout API's answers, as its OpenAPI schema shows them.

The views build their answers as plain dicts (`rollout.api.version_out`, `scheduled_out`);
these serializers only describe them. Schemathesis checks every answer against them
(tests/test_api_contract.py), so a shape that drifts from its description fails the suite.
"""

from __future__ import annotations

from rest_framework import serializers

from .models import ChangeKind, ScheduledChange
from .stages import Stage
from .verdicts import Verdict


def _words(help_text: str) -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(), help_text=help_text)


class PolicySpecOut(serializers.Serializer):
    stage = serializers.ChoiceField(choices=Stage.choices)
    rules = serializers.ListField(child=serializers.DictField(),
                                  help_text="The scope rules, in canonical form.")
    confidence_threshold = serializers.FloatField()
    audit_rate = serializers.FloatField()
    paused_cells = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Cells where automation is paused, each [rule name, region code].")
    guardrails = serializers.DictField(help_text="Guardrail settings that differ from the "
                                                 "defaults.")


class PolicyVersionOut(PolicySpecOut):
    version = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ChangeKind.choices)
    author = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    override_reason = serializers.CharField(allow_blank=True)
    copied_from = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    scope_in_words = _words("The scope, in sentences.")
    diff = _words("What changed since the version before (a first version says so).")


class PolicyHistoryOut(serializers.Serializer):
    versions = PolicyVersionOut(many=True, help_text="Newest first.")


class ProportionOut(serializers.Serializer):
    k = serializers.IntegerField()
    n = serializers.IntegerField()
    low = serializers.FloatField(allow_null=True, help_text="Wilson 95% lower bound.")
    high = serializers.FloatField(allow_null=True, help_text="Wilson 95% upper bound.")


class ClassRecallOut(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]  # not Field.label
    n = serializers.IntegerField()
    correct = serializers.IntegerField()


class EvidenceOut(serializers.Serializer):
    widening = _words("How the proposal widens automation.")
    days = serializers.IntegerField()
    replayed = serializers.IntegerField()
    automated_now = serializers.IntegerField()
    automated_proposed = serializers.IntegerField()
    added = serializers.IntegerField()
    added_agreement = ProportionOut()
    proposed_agreement = ProportionOut()
    recall = ClassRecallOut(many=True)
    queue_per_day_now = serializers.FloatField()
    queue_per_day_proposed = serializers.FloatField()
    gate = serializers.CharField(help_text="pass, fail, inconclusive or \"not needed\".")
    gate_reason = serializers.CharField()
    floor = serializers.FloatField()
    min_sample = serializers.IntegerField()
    proof_evidence = serializers.FloatField(
        help_text="the e-value that agreement in the added scope is above the floor; the gate "
                  "passes at the policy's proof_evidence")
    answers_to_prove = serializers.IntegerField(
        allow_null=True, help_text="about how many more reviewed cases, agreeing at the rate "
                                   "seen, would prove it; null when they would not")
    per_rule = serializers.DictField(child=serializers.IntegerField())
    passes = serializers.BooleanField()


class PolicyEvidenceOut(serializers.Serializer):
    proposed = PolicySpecOut()
    scope_in_words = _words("The proposed scope, in sentences.")
    diff = _words("What the proposal changes.")
    evidence = EvidenceOut()


class AgreementOut(serializers.Serializer):
    agreed = serializers.IntegerField()
    n = serializers.IntegerField()
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    fail_evidence = serializers.FloatField(
        help_text="e-detector value against \"agreement at or above the floor\"; the cell "
                  "pauses at the policy's pause_evidence")
    pass_evidence = serializers.FloatField(
        help_text="e-value that agreement is above the floor since the scope was published")
    answers_to_prove = serializers.IntegerField(allow_null=True)


class CountOut(serializers.Serializer):
    agreed = serializers.IntegerField()
    n = serializers.IntegerField()


class OutOfDomainOut(serializers.Serializer):
    count = serializers.IntegerField()
    n = serializers.IntegerField()
    baseline = serializers.FloatField(allow_null=True)
    limit = serializers.FloatField(allow_null=True)
    fail_evidence = serializers.FloatField(allow_null=True)
    verdict = serializers.ChoiceField(choices=Verdict.choices)


class GuardrailCellOut(serializers.Serializer):
    rule = serializers.CharField()
    region = serializers.CharField()
    paused = serializers.BooleanField()
    since = serializers.DateTimeField(allow_null=True,
                                      help_text="when the cell's current scope was published")
    audit_rate = serializers.FloatField(help_text="the cell's adaptive audit rate now")
    agreement = AgreementOut()
    low_confidence_reviews = CountOut()
    out_of_domain = OutOfDomainOut()


class GuardrailsOut(serializers.Serializer):
    cells = GuardrailCellOut(many=True)


class ScheduledChangeOut(serializers.Serializer):
    id = serializers.IntegerField()
    effective_at = serializers.DateTimeField()
    stage = serializers.ChoiceField(choices=Stage.choices)
    rules = serializers.ListField(child=serializers.DictField())
    confidence_threshold = serializers.FloatField()
    audit_rate = serializers.FloatField()
    reason = serializers.CharField()
    status = serializers.ChoiceField(choices=ScheduledChange.Status.choices)
    status_note = serializers.CharField(allow_blank=True)
    published_version = serializers.IntegerField(allow_null=True)


class ScheduledChangesOut(serializers.Serializer):
    scheduled = ScheduledChangeOut(many=True, help_text="Latest effective time first.")
