"""Guardrail pauses across a change of policy: what becomes of each one, as plain values.

A pause is a cell, [rule name, region]: the cases of that region that the rule takes go to
reviewers. A pause is never lifted as a side effect of a change of scope; only leaving it out
on purpose (resuming the cell, rolling back, an explicit list of pauses) lifts it. When a
change makes a paused cell disappear, the pause goes where the cases went:

- the cell is still in the new policy (same rule, still taking the region): the pause stays;
- the new policy is not automated (shadow, paused): the pause stays as it is, and applies
  again when automation comes back;
- the region is now taken by cells the old policy did not have (a renamed rule, a rule whose
  name was made anew, a rule newly reaching the region, the full stage or a rule replacing it):
  the pause moves to each of them, so the region stays with reviewers;
- otherwise no new cell takes the region's cases: the pause ends with its cell (the cases go
  to reviewers, or to an unpaused cell that was already deciding them before the change).

A pause that paused nothing (its rule no longer took the region in the current policy) is
dropped. `pauses_carry` computes a proposal's pauses; `pause_fates` tells, for any two
versions, what happened to each pause: the words of a preview, a confirmation and a diff,
and the widening gate, all come from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..stages import Stage
from .validation import ScopeError

FULL_RULE = "full"
"""The one rule name of the full stage: its cells are (full, region)."""

_AUTOMATED = (Stage.LIMITED, Stage.EXPANDING, Stage.FULL)

Cell = tuple[str, str]


class Fate(StrEnum):
    KEPT = "kept"  # still paused, in the same cell
    MOVED = "moved"  # the region stays with reviewers under the cells in `to`
    ENDED = "ended"  # the cell is gone and no new cell takes the region's cases
    DROPPED = "dropped"  # it paused nothing: its rule did not take the region
    LIFTED = "lifted"  # left out on purpose: the model decides there again (`to`: under which)
    ADDED = "added"  # a new pause


@dataclass(frozen=True)
class PauseFate:
    rule: str
    region: str
    fate: Fate
    to: tuple[str, ...] = ()  # MOVED: the rules now paused in the region; LIFTED: now deciding


def rule_takes(rule: Mapping[str, Any], region: str) -> bool:
    """Does a rule take cases from `region` (whatever its other conditions)?"""
    regions = rule.get("regions")
    return (not regions or region in regions) and region not in (rule.get("regions_not") or ())


def rules_in(spec: Mapping[str, Any], region: str) -> list[str]:
    """The rules of a policy that take cases from `region`: its cells in that region."""
    if spec["stage"] == Stage.FULL:
        return [FULL_RULE]
    return [r["name"] for r in spec["rules"] if rule_takes(r, region)]


def cell_live(spec: Mapping[str, Any], cell: Sequence[str]) -> bool:
    """Is (rule, region) a cell of the policy, so that pausing it sends cases to reviewers?"""
    return cell[0] in rules_in(spec, cell[1])


def _cells(spec: Mapping[str, Any] | None) -> list[Cell]:
    if spec is None:
        return []
    return [(str(c[0]), str(c[1])) for c in spec.get("paused_cells") or ()]


def _carry(old: Mapping[str, Any], new: Mapping[str, Any], cell: Cell
           ) -> tuple[Fate, tuple[str, ...]]:
    """Where a pause of `old` goes under `new`'s stage and rules (whatever `new` pauses)."""
    region = cell[1]
    if new["stage"] not in _AUTOMATED or cell_live(new, cell):
        return Fate.KEPT, ()
    if old["stage"] in _AUTOMATED and not cell_live(old, cell):
        return Fate.DROPPED, ()
    before = set(rules_in(old, region))
    targets = tuple(name for name in rules_in(new, region) if name not in before)
    return (Fate.MOVED, targets) if targets else (Fate.ENDED, ())


def pauses_carry(current: Mapping[str, Any] | None, proposed: Mapping[str, Any],
                 requested: Sequence[Sequence[str]] | None = None) -> list[list[str]]:
    """The pauses of `proposed` (a stage and rules) when it replaces `current`.

    `requested` None: every pause of `current`, carried as the module says. Otherwise the
    pauses asked for: one of `current`'s is carried the same way (one left out is lifted),
    a new one must be a cell of `proposed` when it automates (ScopeError naming
    `paused_cells[i]`).
    """
    held = _cells(current)
    wanted = held if requested is None else [(str(c[0]), str(c[1])) for c in requested]
    out: list[list[str]] = []

    def add(cell: Cell) -> None:
        if list(cell) not in out:
            out.append(list(cell))

    for i, cell in enumerate(wanted):
        if current is not None and cell in held:
            fate, targets = _carry(current, proposed, cell)
            if fate == Fate.KEPT:
                add(cell)
            for target in targets:
                add((target, cell[1]))
        elif proposed["stage"] not in _AUTOMATED or cell_live(proposed, cell):
            add(cell)
        else:
            raise ScopeError(
                f"region {cell[1]!r} under rule {cell[0]!r} is not part of the proposed "
                "policy: a pause names a rule of the policy (\"full\" in the full stage) and a "
                "region that rule takes", field=f"paused_cells[{i}]")
    return out


def pause_fates(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[PauseFate]:
    """What became of each pause of `old` in `new`, then `new`'s own new pauses."""
    if old is None:
        return [PauseFate(rule, region, Fate.ADDED) for rule, region in _cells(new)]
    now = set(_cells(new))
    fates: list[PauseFate] = []
    accounted: set[Cell] = set()
    for cell in _cells(old):
        rule, region = cell
        fate, targets = _carry(old, new, cell)
        if fate == Fate.KEPT:
            if cell in now:
                fates.append(PauseFate(rule, region, Fate.KEPT))
                accounted.add(cell)
            else:
                fates.append(PauseFate(rule, region, Fate.LIFTED, (rule,)))
        elif fate == Fate.MOVED:
            held = tuple(t for t in targets if (t, region) in now)
            freed = tuple(t for t in targets if (t, region) not in now)
            if held:
                fates.append(PauseFate(rule, region, Fate.MOVED, held))
                accounted.update((t, region) for t in held)
            if freed:
                fates.append(PauseFate(rule, region, Fate.LIFTED, freed))
        elif cell not in now:
            fates.append(PauseFate(rule, region, fate))
        else:
            accounted.add(cell)  # a copy of a pause that pauses nothing: no change
    fates.extend(PauseFate(rule, region, Fate.ADDED) for rule, region in _cells(new)
                 if (rule, region) not in accounted and (rule, region) in pauses_in_force(new))
    return fates


def pauses_in_force(spec: Mapping[str, Any]) -> list[Cell]:
    """The pauses that send cases to reviewers under `spec` (in a stage that automates
    nothing, every pause, kept for when automation comes back)."""
    if spec["stage"] not in _AUTOMATED:
        return _cells(spec)
    return [cell for cell in _cells(spec) if cell_live(spec, cell)]
