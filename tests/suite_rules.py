"""Rules of the suite itself, a pytest plugin that tests/conftest.py loads: a skipped test fails
the session, since `make test` runs every test on the real services and a skip hides a gap."""

from __future__ import annotations

import pytest


class SkippedTestsFail:
    def __init__(self) -> None:
        self.skipped: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            self.skipped.append(f"{report.nodeid} ({reason.removeprefix('Skipped: ')})")

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.skipped and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.skipped:
            terminalreporter.write_line(
                f"FAILED: {len(self.skipped)} skipped test(s), and every test must run: "
                + "; ".join(self.skipped), red=True, bold=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkippedTestsFail(), "skipped-tests-fail")
