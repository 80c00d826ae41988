"""The suite's own rules: `make test` fails when a test is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_pytest(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:django", "-p", "no:cacheprovider",
         "-p", "tests.suite_rules", "--rootdir", str(tmp_path), "-c", os.devnull,
         str(tmp_path / "test_sample.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_it_fails_a_session_with_a_skipped_test_and_names_it(tmp_path):
    result = run_pytest(tmp_path, (
        "import pytest\n"
        "def test_runs(): pass\n"
        "def test_is_skipped(): pytest.skip('no server here')\n"
        "@pytest.mark.skipif(True, reason='not on this machine')\n"
        "def test_is_skipped_by_mark(): pass\n"
        "@pytest.mark.xfail(reason='known bug', strict=True)\n"
        "def test_expected_to_fail(): assert False\n"))

    assert result.returncode == 1, result.stdout
    summary = [line for line in result.stdout.splitlines()
               if line.startswith("FAILED: 2 skipped test(s)")]
    assert len(summary) == 1, result.stdout
    assert "test_sample.py::test_is_skipped (no server here)" in summary[0]
    assert "test_sample.py::test_is_skipped_by_mark (not on this machine)" in summary[0]
    assert "test_expected_to_fail" not in summary[0]
    assert "1 passed, 2 skipped, 1 xfailed" in result.stdout


def test_it_passes_a_session_where_every_test_ran(tmp_path):
    result = run_pytest(tmp_path, "def test_runs(): pass\n")

    assert result.returncode == 0, result.stdout
    assert "skipped" not in result.stdout


def test_it_keeps_the_status_of_a_session_that_failed_anyway(tmp_path):
    result = run_pytest(tmp_path, (
        "import pytest\n"
        "def test_fails(): assert False\n"
        "def test_is_skipped(): pytest.skip('no server here')\n"))

    assert result.returncode == 1, result.stdout
    assert "FAILED: 1 skipped test(s)" in result.stdout
