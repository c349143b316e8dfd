"""Benchmark: the incremental history index on a 100,000-commit history.

On a generated history of 10,000 run records and 90,000 other commits
(``--quick``: 1,000 + 9,000) this times

* the cold index build: ``rerund plan --json`` with no ``.git/rerund/``;
* ``rerund plan --json`` with a warm index and no new commit;
* five times: one new commit that edits ``raw/<k>.txt`` (made outside the
  timing), then ``rerund plan --json`` (command line, reads one new commit);
* five times: one more such commit, then ``plan_tip`` inside this (warm)
  process: what the daemon calls for a job (open the index, read the new
  commit, read the reproduction notes, plan);
* ``python -c pass`` and ``python -c 'import rerund.cli.main'`` with the same
  interpreter, to separate start-up cost from the work;
* ``datalad -f json rerun --report --since=HEAD~1``: the smallest comparable
  DataLad call. It only lists the new commit; DataLad has no staleness analysis.

Every plan after an edit of ``raw/<k>.txt`` must be exactly the current records
of pipeline k (the newest record of each ``out/<k>/s<j>.txt``), in step order;
DataLad must find no run record in the new commit. Anything else ends the
benchmark with exit code 1. Prints the table for docs/benchmarks.md.

    python bench/bench_incremental.py [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    DATALAD,
    PYTHON,
    RERUND,
    Timing,
    fmt_s,
    fmt_timing,
    git,
    machine_info,
    markdown_table,
    progress,
    remove_tree,
    repeat,
    require,
    run_timed,
    scratch_dir,
    write_results,
)
from make_history import BRANCH, build_history
from rerund.core.gitrepo import GitRepo
from rerund.core.plan import PlanOptions, plan_tip

# What a daemon job calls: index, new commits, reproduction notes, plan.
IN_PROCESS_API = "plan_tip (index + new commit + reproduction notes + plan)"
RUNS = 5
DATALAD_RUNS = 3
DATALAD_REPEAT_BELOW_S = 30.0
PIPELINE = 0  # the pipeline whose raw input the new commits edit


@dataclass
class Row:
    what: str
    timing: Timing
    note: str = ""

    def cells(self) -> list[str]:
        return [self.what, fmt_s(self.timing.median), fmt_s(self.timing.min), self.note]

    def to_json(self) -> dict[str, Any]:
        return {"what": self.what, **self.timing.to_json(), "note": self.note}


class Dataset:
    """The generated history, and new commits on top of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.edits = 0

    def edit_raw(self, pipeline: int) -> str:
        """Commit a new ``raw/<pipeline>.txt``; return the new tip."""
        self.edits += 1
        raw = f"raw/{pipeline}.txt"
        (self.path / raw).write_text(
            f"pipeline {pipeline} raw data, bench edit {self.edits}\n", encoding="utf-8"
        )
        git(self.path, "add", raw)
        git(self.path, "-c", "gc.auto=0", "commit", "-q", "-m", f"Update {raw} (bench)")
        return git(self.path, "rev-parse", "HEAD")

    def current_records(self, pipeline: int) -> list[str]:
        """The newest record writing each ``out/<k>/s<j>.txt``, by step ``j``.

        Only run records write ``out/``, and each writes one file, so this is
        the first commit that ``git log`` names for each path.
        """
        log = git(self.path, "log", "--format=%x00%H", "--name-only", "--", f"out/{pipeline}/")
        newest: dict[str, str] = {}
        for entry in log.split("\0")[1:]:
            sha, *paths = entry.split()
            for path in paths:
                newest.setdefault(path, sha)
        prefix = f"out/{pipeline}/s"
        steps = sorted(newest, key=lambda p: int(p.removeprefix(prefix).removesuffix(".txt")))
        return [newest[p] for p in steps]


def check_plan(steps: list[str], expected: list[str], label: str) -> None:
    require(
        steps == expected,
        f"{label}: plan has {len(steps)} steps, expected the {len(expected)} current "
        f"records of pipeline {PIPELINE} in step order",
    )


def cli_plan(path: Path) -> tuple[float, list[str]]:
    done = run_timed([RERUND, "plan", "--json"], path)
    return done.seconds, [step["commit"] for step in json.loads(done.stdout)["steps"]]


def in_process_plan(repo: GitRepo, tip: str) -> tuple[float, list[str]]:
    """The daemon's planning call, in this process: index, new commits, notes, plan."""
    start = time.perf_counter()
    plan, _ = plan_tip(repo, BRANCH, tip, PlanOptions())
    seconds = time.perf_counter() - start
    return seconds, [step.commit for step in plan.steps]


def datalad_row(path: Path) -> Row:
    """DataLad's smallest comparable call on the same repository.

    The new commit edits raw data and is no run record, so DataLad reports that
    the range holds no run commit (status "impossible", exit code 1).
    """
    datalad_argv: list[str | Path] = [DATALAD, "-f", "json", "rerun", "--report", "--since=HEAD~1"]
    datalad = Timing()
    results: list[dict[str, Any]] = []
    for _ in range(DATALAD_RUNS):
        done = run_timed(datalad_argv, path, check=False)
        datalad.samples.append(done.seconds)
        results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        if done.seconds >= DATALAD_REPEAT_BELOW_S:
            break
    require(
        len(results) == 1 and results[0].get("status") == "impossible",
        f"{' '.join(map(str, datalad_argv))} found a run record in the new commit, which"
        f" rerund's plan does not start from: {results!r}",
    )
    message = results[0].get("message")
    said = message[0] % tuple(message[1:]) if isinstance(message, list) else str(message)
    progress(f"datalad rerun --report --since=HEAD~1: {fmt_timing(datalad)}: {said}")
    return Row(
        "`datalad -f json rerun --report --since=HEAD~1`",
        datalad,
        f"looks at the 1 new commit: {results[0].get('status')} ({said}); "
        "DataLad has no staleness analysis",
    )


def run_bench(root: Path, records: int, noise: int) -> tuple[dict[str, Any], list[Row]]:
    path = root / "history"
    stats = build_history(path, records, noise)
    progress(f"{stats.records:,} records, {stats.commits:,} commits built in {stats.seconds:.1f} s")
    ds = Dataset(path)
    index_dir = path / ".git" / "rerund"
    rows: list[Row] = []

    # Interpreter start-up, for separating the command line's fixed cost.
    run_timed([PYTHON, "-c", "pass"], path)
    python_start = repeat(RUNS, lambda: run_timed([PYTHON, "-c", "pass"], path).seconds)
    import_cli = repeat(
        RUNS, lambda: run_timed([PYTHON, "-c", "import rerund.cli.main"], path).seconds
    )

    # (a) Cold index build, at a tip where nothing is stale.
    cold = Timing()
    for _ in range(RUNS):
        remove_tree(index_dir)
        seconds, steps = cli_plan(path)
        cold.samples.append(seconds)
        check_plan(steps, [], "cold plan at the generated tip")
    progress(f"cold index build: {fmt_timing(cold)}")
    rows.append(
        Row(
            f"`rerund plan --json`, cold: builds the index of {stats.commits:,} commits",
            cold,
            "0 steps (tip is consistent)",
        )
    )

    warm_nothing = repeat(RUNS, lambda: cli_plan(path)[0])
    progress(f"warm, nothing new: {fmt_timing(warm_nothing)}")
    rows.append(Row("`rerund plan --json`, warm index, no new commit", warm_nothing, "0 steps"))

    # (b) One new commit each time: command line, then in this process.
    repo = GitRepo(path)
    cli_one = Timing()
    lib_one = Timing()
    expected: list[str] = []
    for _ in range(RUNS):
        ds.edit_raw(PIPELINE)
        expected = ds.current_records(PIPELINE)
        seconds, steps = cli_plan(path)
        cli_one.samples.append(seconds)
        check_plan(steps, expected, "rerund plan --json after one edit")

        tip = ds.edit_raw(PIPELINE)
        seconds, steps = in_process_plan(repo, tip)
        lib_one.samples.append(seconds)
        check_plan(steps, expected, "in-process plan_tip after one edit")
    progress(f"warm, one new commit: CLI {fmt_timing(cli_one)}, in-process {fmt_timing(lib_one)}")
    plan_note = f"{len(expected)} steps = current records of pipeline {PIPELINE}"
    rows.append(Row("`rerund plan --json`, warm index, 1 new commit", cli_one, plan_note))
    rows.append(
        Row(
            f"in-process `{IN_PROCESS_API}`, 1 new commit",
            lib_one,
            plan_note + "; imports already done",
        )
    )
    rows.append(Row("`python -c pass` (interpreter start)", python_start))
    rows.append(Row("`python -c 'import rerund.cli.main'` (start + imports)", import_cli))
    startup = python_start.median
    rows.append(
        Row(
            "`rerund plan --json`, 1 new commit, minus interpreter start",
            Timing([s - startup for s in cli_one.samples]),
            "CLI samples − median `python -c pass`",
        )
    )

    rows.append(datalad_row(path))
    facts = {
        "records": stats.records,
        "commits": stats.commits,
        "plan_steps_after_edit": len(expected),
        "pipeline": PIPELINE,
        "in_process_api": IN_PROCESS_API,
    }
    return facts, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="1,000 records + 9,000 commits instead of 10x that"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated history")
    args = parser.parse_args(argv)
    records, noise = (1_000, 9_000) if args.quick else (10_000, 90_000)

    info = machine_info()
    with scratch_dir("bench-incremental", keep=args.keep) as root:
        facts, rows = run_bench(root, records, noise)

    print(f"{facts['records']:,} run records, {facts['commits']:,} commits.\n")
    print(markdown_table(["measurement", "median", "min", "notes"], [r.cells() for r in rows]))
    print(
        f"\nrerund: median of {RUNS} runs; DataLad: median of {DATALAD_RUNS} runs. "
        f"After each new commit editing raw/{facts['pipeline']}.txt the plan was exactly "
        f"the {facts['plan_steps_after_edit']} current records of pipeline "
        f"{facts['pipeline']}, in step order. DataLad has no staleness analysis: "
        "`datalad rerun --report` only lists the run records in the range it is given."
    )
    out = write_results(
        "bench_incremental",
        {
            "benchmark": "bench_incremental",
            "machine": info,
            "quick": args.quick,
            **facts,
            "results": [row.to_json() for row in rows],
        },
    )
    progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
