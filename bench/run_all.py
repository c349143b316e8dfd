"""Run every benchmark in bench/ and write their tables into docs/benchmarks.md.

    python bench/run_all.py [--quick] [--only NAME ...] [--docs PATH]

Each benchmark runs as its own process (``python bench/<name>.py``); its
standard output is its part of the page, which goes between the markers
``<!-- bench:<name> -->`` and ``<!-- /bench:<name> -->``. The page's header
(between ``<!-- bench:header -->`` markers) names the commit measured, the
date, the mode and the machine. A benchmark that fails (a crash, or rerund and
DataLad disagreeing on the work) fails the whole run with exit code 1, and the
page is left as it was: no figure is ever kept from a run that did not hold.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from benchlib import BENCH_DIR, PYTHON, machine_info, machine_table, progress, rerund_commit

BENCHMARKS = (
    "bench_plan",
    "bench_incremental",
    "bench_chain",
    "bench_service",
    "bench_health",
    "bench_subdatasets",
    "bench_propagate",
    "bench_verify",
    "bench_dashboard",
    "bench_sandbox",
    "bench_slurm",
    "bench_leastwork",
)
DOCS = BENCH_DIR.parent / "docs" / "benchmarks.md"


class MarkerError(ValueError):
    """The page lacks the markers a generated part goes between."""


def replace_section(page: str, name: str, content: str) -> str:
    """``page`` with the text between ``name``'s markers replaced by ``content``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(page)) != 1:
        raise MarkerError(f"the page needs exactly one {start} ... {end} pair")
    return pattern.sub(lambda _: f"{start}\n{content.strip()}\n{end}", page)


def header(commit: str, quick: bool, info: Mapping[str, str]) -> str:
    mode = "`--quick` (smaller sizes, fewer rounds)" if quick else "full"
    command = "python bench/run_all.py" + (" --quick" if quick else "")
    return (
        f"Measured at rerund commit **{commit}** on"
        f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, mode: {mode}, by `{command}`,"
        " which wrote every table on this page.\n\n" + machine_table(info)
    )


def run_benchmark(name: str, quick: bool) -> str:
    """Run one benchmark; its tables (stdout). Raises SystemExit when it fails."""
    progress(f"=== {name}")
    done = subprocess.run(
        [str(PYTHON), str(BENCH_DIR / f"{name}.py"), *(["--quick"] if quick else [])],
        cwd=BENCH_DIR.parent,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{name} failed with exit code {done.returncode}; docs/benchmarks.md is unchanged"
        )
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="each benchmark's --quick")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--docs", type=Path, default=DOCS, help="the page to write")
    args = parser.parse_args(argv)
    commit, info = rerund_commit(), machine_info()  # the state measured, before hours of work
    if commit.endswith("-dirty"):
        progress(f"note: measuring uncommitted changes ({commit})")
    page = args.docs.read_text(encoding="utf-8")
    names = args.only or BENCHMARKS
    for name in ("header", *names):
        replace_section(page, name, "")  # every marker is there before hours of work
    sections = {name: run_benchmark(name, args.quick) for name in names}
    sections["header"] = header(commit, args.quick, info)
    for name, content in sections.items():
        page = replace_section(page, name, content)
    args.docs.write_text(page, encoding="utf-8")
    progress(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
