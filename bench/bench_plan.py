"""Benchmark: selecting records with ``--since`` -- rerund vs ``datalad rerun --report``.

For histories of 100, 1,000 and 10,000 run records (each with nine non-record
commits per record: 1k, 10k and 100k commits) this times

    rerund plan --since= --json                      (5 runs: median, min)
    datalad -f json rerun --report --since=          (3 runs if < 30 s, else 1)

in the dataset directory, and checks that every run of each selects the same
run commits in the same order (a difference ends the benchmark with exit code 1).
DataLad is stopped after ``--datalad-timeout`` seconds; the ratio is then a lower
bound. Prints the table for docs/benchmarks.md (``bench/run_all.py`` puts it there).

    python bench/bench_plan.py [--quick] [--datalad-timeout SECONDS] [--keep]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    DATALAD,
    RERUND,
    Timing,
    fmt_s,
    fmt_timing,
    machine_info,
    markdown_table,
    progress,
    require,
    run_timed,
    scratch_dir,
    write_results,
)
from make_history import build_history

SIZES = (100, 1_000, 10_000)
NOISE_PER_RECORD = 9
RERUND_RUNS = 5
DATALAD_RUNS = 3
DATALAD_REPEAT_BELOW_S = 30.0


@dataclass
class SizeResult:
    records: int
    commits: int
    rerund: Timing
    datalad: Timing | None  # None: stopped at the timeout
    datalad_timeout_s: float
    steps: int
    same_steps: bool | None  # None: DataLad did not finish

    @property
    def ratio(self) -> float:
        """DataLad time / rerund time (a lower bound when DataLad was stopped)."""
        datalad = self.datalad.median if self.datalad else self.datalad_timeout_s
        return datalad / self.rerund.median

    def row(self) -> list[str]:
        if self.datalad is None:
            datalad = f"> {self.datalad_timeout_s:.0f} s (stopped)"
            ratio = f"> {self.ratio:,.0f}×"
            same = "n/a (DataLad stopped)"
        else:
            datalad = fmt_timing(self.datalad)
            ratio = f"{self.ratio:,.0f}×"
            same = f"yes, every run ({self.steps} steps)" if self.same_steps else "NO"
        return [
            f"{self.records:,}",
            f"{self.commits:,}",
            fmt_timing(self.rerund),
            datalad,
            ratio,
            same,
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "commits": self.commits,
            "rerund": self.rerund.to_json(),
            "datalad": self.datalad.to_json() if self.datalad else None,
            "datalad_stopped_after_s": None if self.datalad else self.datalad_timeout_s,
            "ratio_datalad_over_rerund": self.ratio,
            "ratio_is_lower_bound": self.datalad is None,
            "steps": self.steps,
            "same_steps": self.same_steps,
        }


def rerund_commits(stdout: str) -> list[str]:
    return [step["commit"] for step in json.loads(stdout)["steps"]]


def datalad_commits(stdout: str) -> list[str]:
    """Commits ``datalad rerun --report`` would run (``rerun_action == "run"``)."""
    commits = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        result = json.loads(line)
        if result.get("rerun_action") == "run":
            commits.append(result["commit"])
    return commits


def _first_difference(left: list[str], right: list[str]) -> int:
    for position, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return position
    return min(len(left), len(right))


def bench_size(records: int, root: Path, timeout: float) -> SizeResult:
    path = root / f"history-{records}"
    stats = build_history(path, records, NOISE_PER_RECORD * records)
    progress(f"{records:,} records: {stats.commits:,} commits built in {stats.seconds:.1f} s")

    rerund_argv: list[str | Path] = [RERUND, "plan", "--since=", "--json"]
    run_timed(rerund_argv, path)  # warm-up: page cache, .pyc files
    rerund = Timing()
    expected: list[str] = []
    for attempt in range(RERUND_RUNS):
        done = run_timed(rerund_argv, path)
        rerund.samples.append(done.seconds)
        selected = rerund_commits(done.stdout)
        require(attempt == 0 or selected == expected, f"{records} records: rerund's runs disagree")
        expected = selected
    progress(f"  rerund plan --since=: {fmt_timing(rerund)}, {len(expected)} steps")
    require(
        len(expected) == records, f"rerund selected {len(expected)} records, expected {records}"
    )

    datalad_argv: list[str | Path] = [DATALAD, "-f", "json", "rerun", "--report", "--since="]
    datalad = Timing()
    same: bool | None = None
    for _ in range(DATALAD_RUNS):
        done = run_timed(datalad_argv, path, timeout=timeout)
        if done.timed_out:
            progress(f"  datalad rerun --report: stopped after {fmt_s(done.seconds)}")
            break
        datalad.samples.append(done.seconds)
        progress(f"  datalad rerun --report: {fmt_s(done.seconds)}")
        got = datalad_commits(done.stdout)  # every run, not just the first
        same = got == expected
        require(
            same,
            f"{records} records: datalad selects {len(got)} commits, rerund "
            f"{len(expected)}; first difference at position {_first_difference(got, expected)}",
        )
        if done.seconds >= DATALAD_REPEAT_BELOW_S:
            break
    return SizeResult(
        records=records,
        commits=stats.commits,
        rerund=rerund,
        datalad=datalad if datalad.samples else None,
        datalad_timeout_s=timeout,
        steps=len(expected),
        same_steps=same,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="only the 100-record history")
    parser.add_argument(
        "--datalad-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="stop a DataLad run after this (default: 600)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated histories")
    args = parser.parse_args(argv)
    sizes = SIZES[:1] if args.quick else SIZES

    info = machine_info()
    results: list[SizeResult] = []
    with scratch_dir("bench-plan", keep=args.keep) as root:
        for records in sizes:
            results.append(bench_size(records, root, args.datalad_timeout))

    print(
        markdown_table(
            [
                "run records",
                "commits",
                "rerund plan --since= --json",
                "datalad -f json rerun --report --since=",
                "datalad / rerund",
                "same commits, same order",
            ],
            [result.row() for result in results],
        )
    )
    print(
        f"\nrerund: median of {RERUND_RUNS} runs after one warm-up (min in parentheses); "
        f"DataLad: median of {DATALAD_RUNS} runs when one takes "
        f"< {DATALAD_REPEAT_BELOW_S:.0f} s, else 1 run, stopped after {args.datalad_timeout:.0f} s."
    )
    out = write_results(
        "bench_plan",
        {
            "benchmark": "bench_plan",
            "machine": info,
            "quick": args.quick,
            "datalad_timeout_s": args.datalad_timeout,
            "results": [result.to_json() for result in results],
        },
    )
    progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
