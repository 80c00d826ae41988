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
          "problems": t.problems, "notes": t.notes} for t in _tallies], indent=2) + "\n")


@pytest.fixture
def platform(transactional_db, tmp_path):
    """The platform's processes on the test database (started by each test as it needs);
    those still running are stopped at the end. Their logs are printed when a test fails."""
    from celery import current_app

    from tests.conftest import other_connections_wait_closed

    from .platform import Platform

    current_app.control.purge()
    running = Platform(tmp_path)
    yield running
    running.stop()
    other_connections_wait_closed()


@pytest.fixture
def redis_server(tmp_path):
    """The test Redis, to stop and start again; running again at the end whatever happened."""
    from .platform import Redis

    server = Redis(tmp_path)
    yield server
    if not server.answers():
        server.start()
    if server.process is not None:
        _restarted_redis.append(server.process)


_restarted_redis: list = []


def pytest_unconfigure(config: pytest.Config) -> None:
    """A Redis started by a fault outlives its test (later tests use it): stop it last."""
    for process in _restarted_redis:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def challenger(champion, trained_model, admin_user):
    from inference.services import model_version_register

    return model_version_register(deployment=champion.deployment, path=trained_model.path,
                                  name="challenger", actor=admin_user)


@pytest.fixture
def model_decides(champion, admin_user):
    """The champion decides the cases it is sure of everywhere (a share audited); the rest
    goes to reviewers."""
    from rollout.services import policy_publish

    return policy_publish(deployment=champion.deployment, stage="full", rules=[],
                          actor=admin_user, confidence_threshold=0.9, audit_rate=0.1,
                          reason="faults: the model decides what it is sure of")


@pytest.fixture
def digit_images(trained_model) -> list[bytes]:
    """The held-out digits as PNG bytes, every label in turn."""
    by_label: dict[str, list[Path]] = {}
    for path in trained_model.test_files:
        by_label.setdefault(path.parent.name, []).append(path)
    rows = zip(*(sorted(paths) for _, paths in sorted(by_label.items())), strict=False)
    return [path.read_bytes() for row in rows for path in row]
