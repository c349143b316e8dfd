"""The benchmarks' own checks hold under `python -O`, fail loudly, and write the page."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
DOCS = ROOT / "docs" / "benchmarks.md"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/ on sys.path, as when a script there runs."""
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda path: path.name)
def test_no_check_is_an_assert(script: Path) -> None:
    """No benchmark checks its results with `assert`, which `python -O` removes."""
    tree = ast.parse(script.read_text(encoding="utf-8"))

    asserts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]

    assert [] == asserts, f"{script.name} asserts on lines {asserts}"


@pytest.mark.usefixtures("bench")
def test_run_all_runs_every_benchmark() -> None:
    """Every bench/bench_*.py is one of run_all's benchmarks, so its figures reach the page."""
    from run_all import BENCHMARKS  # noqa: PLC0415

    assert sorted(path.stem for path in BENCH.glob("bench_*.py")) == sorted(BENCHMARKS)


@pytest.mark.parametrize("script", sorted(BENCH.glob("bench_*.py")), ids=lambda path: path.name)
def test_every_benchmark_takes_quick(script: Path) -> None:
    """Each benchmark declares the --quick option run_all passes it."""
    tree = ast.parse(script.read_text(encoding="utf-8"))

    options = [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "add_argument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]

    assert "--quick" in options


def _ingest(**changes: Any) -> dict[str, Any]:
    result = {
        "completed": 100,
        "non_2xx": 0,
        "stored": 100,
        "all_stored": True,
        "outcomes": {"queued": 3, "coalesced": 97},
        "jobs": {"succeeded": 4},
    }
    return {**result, **changes}


@pytest.mark.usefixtures("bench")
@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"non_2xx": 2}, "answered with errors"),
        ({"stored": 99, "all_stored": False}, "only 99 stored"),
        ({"outcomes": {"handled": 100}}, "no delivery queued a job"),
        ({"outcomes": {"queued": 100}}, "no delivery coalesced"),
        ({"jobs": {"succeeded": 3, "failed": 1}}, "jobs failed"),
    ],
)
def test_ingest_fails_loudly_when_deliveries_are_lost_or_no_job_runs(
    changes: dict[str, Any], complaint: str
) -> None:
    """The ingest benchmark refuses a round that lost, refused or never queued real work."""
    from bench_service import check_ingest  # noqa: PLC0415
    from benchlib import DisagreementError  # noqa: PLC0415

    check_ingest(_ingest())
    with pytest.raises(DisagreementError, match=complaint):
        check_ingest(_ingest(**changes))


@pytest.mark.usefixtures("bench")
def test_run_all_replaces_exactly_the_marked_parts() -> None:
    """run_all writes a benchmark's output between its markers, and needs the markers."""
    from run_all import MarkerError, replace_section  # noqa: PLC0415

    page = "intro\n<!-- bench:x -->\nold table\n<!-- /bench:x -->\nprose\n"

    assert "intro\n<!-- bench:x -->\nnew\n<!-- /bench:x -->\nprose\n" == replace_section(
        page, "x", "new\n"
    )
    with pytest.raises(MarkerError):
        replace_section(page, "y", "new")


def test_the_page_was_written_by_run_all_at_a_commit_of_this_history() -> None:
    """docs/benchmarks.md has every benchmark's markers and names a commit HEAD contains."""
    page = DOCS.read_text(encoding="utf-8")
    names = [path.stem for path in BENCH.glob("bench_*.py")]
    for name in ["header", *names]:
        assert 1 == page.count(f"<!-- bench:{name} -->") == page.count(f"<!-- /bench:{name} -->")
        section = page.split(f"<!-- bench:{name} -->\n")[1].split(f"<!-- /bench:{name} -->")[0]
        assert "|" in section, f"no table for {name}"
    found = re.search(r"Measured at rerund commit \*\*([0-9a-f]{7,40})\*\*", page)  # not -dirty
    assert found is not None
    ancestor = subprocess.run(
        ["git", "merge-base", "--is-ancestor", found.group(1), "HEAD"], cwd=ROOT, check=False
    )
    assert 0 == ancestor.returncode
