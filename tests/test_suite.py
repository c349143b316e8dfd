"""The test suite itself: a quick run (``-m "not slow"``) leaves out what takes seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _collected(*args: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "--collect-only", "-q", *args],
        cwd=TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_quick_run_skips_daemon_and_dataset_tests_but_keeps_pure_ones() -> None:
    """`-m "not slow"` selects no daemon test and keeps every webhook and store test."""
    quick = _collected(
        "-m",
        "not slow",
        "tests/service/test_service.py",
        "tests/service/test_store.py",
        "tests/triggers/test_webhooks.py",
    )

    assert [] == [test for test in quick if "test_service.py" in test]
    assert any("test_store.py" in test for test in quick)
    assert any("test_webhooks.py" in test for test in quick)
