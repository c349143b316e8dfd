"""`rerund verify` of a 20-record pipeline against the seed's workflow by hand.

    python bench/bench_verify.py [--quick] [--records N]

The pipeline is real ``datalad run`` records in a chain (each step reads the
previous step's output). By hand, per record R, as the seed describes it: in a
clone, ``git checkout --detach R^``, ``datalad rerun R``, ``git diff R HEAD``
(leaving out the record directory). rerund: ``rerund verify --json`` with one
and with two records at a time. Both must call every record identical, or
the run fails (exit code 1). ``--quick``: 10 records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    DATALAD,
    fmt_s,
    git,
    machine_info,
    markdown_table,
    progress,
    require,
    run,
    scratch_dir,
    write_results,
)

STEP = 'mkdir -p "$(dirname "$2")"\ncksum < "$1" > "$2"\n'
IDENTITY = {
    "GIT_AUTHOR_NAME": "rerund bench",
    "GIT_AUTHOR_EMAIL": "bench@rerund.invalid",
    "GIT_COMMITTER_NAME": "rerund bench",
    "GIT_COMMITTER_EMAIL": "bench@rerund.invalid",
}


def build(path: Path, records: int) -> list[str]:
    """A text2git dataset with a chain of ``records`` steps; their commits, oldest first."""
    run([DATALAD, "create", "-c", "text2git", str(path)], path.parent, env=IDENTITY)
    (path / "raw").mkdir()
    (path / "raw" / "data.txt").write_text("3\n1\n2\n")
    (path / "code").mkdir()
    (path / "code" / "step.sh").write_text(STEP)
    run([DATALAD, "save", "-m", "raw data and code"], path, env=IDENTITY)
    commits = []
    previous = "raw/data.txt"
    for number in range(records):
        output = f"out/s{number:02d}.txt"
        run(
            [DATALAD, "run", "-m", f"step {number}", "-i", previous, "-o", output,
             "sh code/step.sh {inputs} {outputs}"],
            path, env=IDENTITY,
        )  # fmt: skip
        commits.append(git(path, "rev-parse", "HEAD"))
        previous = output
    return commits


def by_hand(dataset: Path, work: Path, commits: list[str]) -> tuple[float, int]:
    """The seed's workflow; returns seconds and how many records reproduced."""
    git(work.parent, "clone", "-q", str(dataset), str(work))
    started = time.perf_counter()
    identical = 0
    for commit in commits:
        git(work, "checkout", "-q", "--detach", f"{commit}^")
        run([DATALAD, "rerun", commit], work, env=IDENTITY)
        same = subprocess.run(
            ["git", "diff", "--quiet", commit, "HEAD", "--", ".", ":(exclude).datalad/runinfo"],
            cwd=work,
            check=False,
        )
        identical += same.returncode == 0
    return time.perf_counter() - started, identical


def with_rerund(dataset: Path, jobs: int) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "rerund", "verify", "--json", "-J", str(jobs)],
        cwd=dataset, capture_output=True, text=True, check=False,
        env={**os.environ, **IDENTITY},
    )  # fmt: skip
    seconds = time.perf_counter() - started
    require(done.returncode == 0, f"rerund verify failed ({done.returncode}): {done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return seconds, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 records")
    parser.add_argument("--records", type=int)
    args = parser.parse_args()
    args.records = args.records or (10 if args.quick else 20)
    with scratch_dir("verify") as root:
        progress(f"building a {args.records}-record pipeline with datalad run")
        dataset = root / "ds"
        commits = build(dataset, args.records)
        progress("by hand: datalad rerun + git diff per record")
        hand_s, hand_same = by_hand(dataset, root / "work", commits)
        progress("rerund verify -J 1 and -J 2")
        one_s, one = with_rerund(dataset, 1)
        two_s, two = with_rerund(dataset, 2)
    for report in (one, two):
        require(
            report["reproducible"] == args.records == report["total"],
            f"rerund verify did not call all {args.records} records identical: {report}",
        )
    require(
        hand_same == args.records,
        f"by hand only {hand_same} of {args.records} records reproduced",
    )
    results = {"records": args.records, "by_hand_s": hand_s, "verify_j1_s": one_s,
               "verify_j2_s": two_s}  # fmt: skip
    write_results("verify", {"machine": machine_info(), **results})
    print(
        markdown_table(
            ["records", "`datalad rerun` + `git diff` per record", "`rerund verify`",
             "`rerund verify -J 2`", "by hand / `-J 2`", "all identical"],
            [[str(args.records), fmt_s(hand_s), fmt_s(one_s), fmt_s(two_s),
              f"{hand_s / two_s:.1f}×", f"yes ({args.records}/{args.records} both ways)"]],
        )
    )  # fmt: skip
    print(
        f"\nOne run each, of a chain of {args.records} real `datalad run` records"
        " (text2git); every record must reproduce both ways."
    )


if __name__ == "__main__":
    main()
