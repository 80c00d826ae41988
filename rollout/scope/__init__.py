"""Scope: the set of cases a policy lets the model decide, as pure functions of plain values.

- `rules`: a rule compiled once and matched per case, sticky buckets, the audit draw;
- `validation`: rules checked and made canonical (`rules_validate`, `ScopeError`);
- `words`: a policy's scope, the diff between two versions and what a change does, in plain
  words;
- `widen`: what a change widens (`widening`), the changes that need evidence.
"""

from .rules import CompiledRule, audit_selected, bucket, rule_compile, window_contains
from .validation import ScopeError, rule_name_make, rules_validate
from .widen import widening
from .words import change_in_words, policy_describe, policy_diff, rule_brief

__all__ = [
    "CompiledRule",
    "ScopeError",
    "audit_selected",
    "bucket",
    "change_in_words",
    "policy_describe",
    "policy_diff",
    "rule_brief",
    "rule_compile",
    "rule_name_make",
    "rules_validate",
    "widening",
    "window_contains",
]
