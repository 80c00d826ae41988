"""Scope: the set of cases a policy lets the model decide, as pure functions of plain values.

- `rules`: a rule compiled once and matched per case, sticky buckets, the audit draw;
- `validation`: rules checked and made canonical (`rules_validate`, `ScopeError`);
- `words`: a policy's scope, the diff between two versions and what a change does, in plain
  words;
- `widen`: what a change widens (`widening`), the changes that need evidence;
- `pauses`: what becomes of each guardrail pause when the scope changes (`pauses_carry`,
  `pause_fates`).
"""

from .pauses import (
    FULL_RULE,
    Fate,
    PauseFate,
    cell_live,
    pause_fates,
    pauses_carry,
    pauses_in_force,
    rule_takes,
)
from .rules import CompiledRule, audit_selected, bucket, rule_compile, window_contains
from .validation import ScopeError, rule_name_make, rules_validate
from .widen import widening
from .words import change_in_words, policy_describe, policy_diff, rule_brief

__all__ = [
    "FULL_RULE",
    "CompiledRule",
    "Fate",
    "PauseFate",
    "ScopeError",
    "audit_selected",
    "bucket",
    "cell_live",
    "change_in_words",
    "pause_fates",
    "pauses_carry",
    "pauses_in_force",
    "policy_describe",
    "policy_diff",
    "rule_brief",
    "rule_compile",
    "rule_name_make",
    "rule_takes",
    "rules_validate",
    "widening",
    "window_contains",
]
