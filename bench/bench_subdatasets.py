"""Benchmark: planning through subdatasets after one of them moved (issue 7 figure).

An analysis dataset with 100 installed subdatasets (``inputs/sub<k>``, plain git,
each with ten data files) and 1,000 run records (record ``j`` of subdataset ``k``
reads ``inputs/sub<k>/data<j>.txt``) is written with ``git fast-import``. After a
first ``rerund plan`` (the index is warm), each round

1. commits in one subdataset: one data file changed, one unrelated file added;
2. commits the moved gitlink in the analysis, as ``datalad save`` would;
3. times ``rerund plan --json`` (a new process: it reads the one new commit,
   compares the subdataset's two commits, and plans) and checks that exactly
   the one reader of the changed file is stale.

    python bench/bench_subdatasets.py [--quick] [--rounds N] [--keep]

Target (issue 7): < 300 ms warm. Every plan must be exactly the readers of the
files changed so far, or the run fails (exit code 1). ``--quick``: 3 rounds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchlib import (
    PYTHON,
    Timing,
    fmt_s,
    fmt_timing,
    git,
    machine_info,
    markdown_table,
    progress,
    require,
    run_timed,
    scratch_dir,
    write_results,
)
from make_history import run_message
from rerund.core.gitrepo import GitRepo
from rerund.core.plan import PlanOptions, plan_tip

SUBDATASETS = 100
RECORDS_PER_SUBDATASET = 10
TARGET_S = 0.300
CMD = "cp {inputs} {outputs}"
# The package on PYTHONPATH (a work tree's), not whatever the console script points at.
PLAN = [PYTHON, "-m", "rerund", "plan", "--json"]


def _commit_sub(path: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (path / name).write_text(text, encoding="utf-8")
    git(path, "add", "--", *files)
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD").strip()


def build(root: Path) -> tuple[Path, list[str]]:
    """The analysis dataset and its subdatasets' first commits."""
    ana = root / "ana"
    git(root, "init", "-q", "-b", "main", str(ana))
    heads = []
    for k in range(SUBDATASETS):
        sub = ana / f"inputs/sub{k}"
        sub.mkdir(parents=True)
        git(sub, "init", "-q", "-b", "main")
        files = {f"data{j}.txt": f"{k} {j}\n" for j in range(RECORDS_PER_SUBDATASET)}
        heads.append(_commit_sub(sub, files, "raw data"))
    dsid = str(uuid.uuid4())
    lines = ["commit refs/heads/main", "committer bench <b@x> 1700000000 +0000"]
    message = "[DATALAD] Added subdatasets\n"
    lines += [f"data {len(message.encode())}", message]
    config = f'[datalad "dataset"]\n\tid = {dsid}\n'
    lines += ["M 100644 inline .datalad/config", f"data {len(config.encode())}", config]
    lines += [f"M 160000 {sha} inputs/sub{k}" for k, sha in enumerate(heads)]
    when = 1_700_000_000
    for k in range(SUBDATASETS):
        for j in range(RECORDS_PER_SUBDATASET):
            when += 60
            inputs, outputs = [f"inputs/sub{k}/data{j}.txt"], [f"out/{k}/{j}.txt"]
            text = run_message(CMD, inputs, outputs, dsid)
            content = f"{k} {j}\n"
            lines += [
                "commit refs/heads/main",
                f"committer bench <b@x> {when} +0000",
                f"data {len(text.encode())}",
                text,
                f"M 100644 inline {outputs[0]}",
                f"data {len(content)}",
                content,
            ]
    lines.append("done")
    subprocess.run(
        ["git", "fast-import", "--quiet", "--done"],
        cwd=ana,
        input="\n".join(lines).encode() + b"\n",
        check=True,
    )
    git(ana, "read-tree", "HEAD")
    return ana, heads


def move_one(ana: Path, k: int, round_no: int) -> None:
    sub = ana / f"inputs/sub{k}"
    files = {"data3.txt": f"fixed {round_no}\n", f"readme{round_no}.txt": "unrelated\n"}
    sha = _commit_sub(sub, files, f"fix {round_no}")
    git(ana, "update-index", "--cacheinfo", f"160000,{sha},inputs/sub{k}")
    git(ana, "commit", "-q", "-m", "[DATALAD] Save updated subdatasets")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    args.rounds = args.rounds or (3 if args.quick else 7)
    with scratch_dir("bench-subdatasets", keep=args.keep) as root:
        progress(f"building {SUBDATASETS} subdatasets and {SUBDATASETS * RECORDS_PER_SUBDATASET}"
                 " records")  # fmt: skip
        ana, _ = build(root)
        cold = run_timed(PLAN, ana)
        require(json.loads(cold.stdout)["steps"] == [], "the fresh history is not consistent")
        progress(f"cold plan (index built): {cold.seconds * 1000:.0f} ms")
        timing, inproc = Timing(), Timing()
        moved: set[int] = set()
        for round_no in range(args.rounds * 2):
            k = (round_no * 37) % SUBDATASETS
            moved.add(k)
            move_one(ana, k, round_no)
            if round_no % 2 == 0:
                done = run_timed(PLAN, ana)
                plan = json.loads(done.stdout)
                timing.samples.append(done.seconds)
            else:  # the planner alone, without the interpreter's start
                started = time.perf_counter()
                tip = GitRepo(ana).text("rev-parse", "HEAD")
                plan = plan_tip(GitRepo(ana), "main", tip, PlanOptions())[0].to_json()
                inproc.samples.append(time.perf_counter() - started)
            stale = sorted(s["reasons"][0]["path"] for s in plan["steps"])
            expected = sorted(f"inputs/sub{m}/data3.txt" for m in moved)
            require(stale == expected, f"round {round_no}: planned {stale}, not {expected}")
    met = "meets" if timing.median < TARGET_S else "misses"
    write_results(
        "bench_subdatasets",
        {"machine": machine_info(), "cold_s": cold.seconds, "cli": timing, "in_process": inproc},
    )
    print(
        markdown_table(
            ["measurement", "time", "plan"],
            [
                ["`rerund plan --json`, cold (builds the index)", fmt_s(cold.seconds),
                 "0 steps (consistent)"],
                ["`rerund plan --json` after one subdataset moved, warm index",
                 f"{fmt_timing(timing)}, {met} < {TARGET_S * 1000:.0f} ms",
                 "exactly the readers of the changed files"],
                ["in-process `plan_tip` after one subdataset moved", fmt_timing(inproc),
                 "the same"],
            ],
        )
    )  # fmt: skip
    print(
        f"\n{SUBDATASETS} installed subdatasets (plain git, {RECORDS_PER_SUBDATASET} data files"
        f" each), {SUBDATASETS * RECORDS_PER_SUBDATASET:,} run records; each round commits one"
        " changed data file and one unrelated file in a subdataset, then the moved gitlink in"
        f" the analysis dataset. {args.rounds} rounds of each kind, alternating."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
