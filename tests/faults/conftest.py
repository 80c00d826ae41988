"""The fault tests' shared parts: each fault records its figures (`faults_record`), printed at
the end of the session and written to test-artifacts/faults.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .reconcile import Tally

ROOT = Path(__file__).resolve().parents[2]
_tallies: list[Tally] = []


@pytest.fixture
def faults_record():
    """Record a fault's tally and check it: every count reconciles, nothing lost or doubled."""
    def record(tally: Tally) -> Tally:
        _tallies.append(tally)
        print(tally.line())
        assert not tally.problems, f"{tally.fault}: " + "; ".join(tally.problems)
        assert (tally.lost, tally.duplicated) == (0, 0)
        return tally
    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _tallies:
        return
    terminalreporter.section("faults: cases pushed through each, lost, duplicated")
    for tally in _tallies:
        terminalreporter.write_line(tally.line())
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "faults.json").write_text(json.dumps(
        [{"fault": t.fault, "pushed": t.pushed, "stored": t.stored, "decided": t.decided,
          "waiting": t.waiting, "lost": t.lost, "duplicated": t.duplicated,
          "problems": t.problems} for t in _tallies], indent=2) + "\n")
