"""Benchmark: per-step overhead of a step run through rerund on Slurm vs plain ``sbatch``.

On the tests' real single-node cluster (``tests/slurm_cluster.py``), a chain of
N real ``datalad run`` records (``s<k>.txt -> s<k+1>.txt`` by ``tac``) is made
stale by one push to a bare repository served by ``rerund serve`` with
``executor = "slurm"`` and ``poll_interval_s = P``; each step's duration is the
daemon's own (``started_at`` to ``finished_at``: worktree, inputs, sbatch,
polling, commit). The same N commands are then submitted with plain
``sbatch --parsable`` and polled the same way (``scontrol show job -o`` every
P seconds), one after the other, each timed from submission to its end.
Overhead per step = (rerund's mean step - sbatch's mean) / sbatch's mean;
the target is <= 10 %. Both must end with the same last output, and rerund
must add one commit per step, or the run fails (exit code 1). The cluster is
started for the run and stopped by PID (``slurm_cluster``). ``--quick``: 4 steps.

    python bench/bench_slurm.py [--quick] [--steps N] [--poll 0.2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchlib import machine_info, markdown_table, progress, require, scratch_dir, write_results
from helpers import Dataset, datalad, git
from service_helpers import Daemon, make_lab, wait_for
from slurm_cluster import SlurmCluster, slurm_cluster

_WAITING = ("PENDING", "RUNNING", "COMPLETING")


def chain(path: Path, steps: int) -> Dataset:
    datalad("create", "-c", "text2git", str(path))
    ds = Dataset(path)
    ds.write("s0.txt", "a\nb\nc\n")
    datalad("save", "-m", "input", cwd=path)
    for k in range(steps):
        ds.run_step(f"s{k + 1}", f"s{k}.txt", f"s{k + 1}.txt", "tac {inputs} > {outputs}")
    return ds


def through_rerund(
    cluster: SlurmCluster, root: Path, steps: int, poll: float
) -> tuple[list[float], str]:
    """Each step's duration as the daemon recorded it, and the last output it committed."""
    lab = make_lab(
        root,
        chain(root / "tpl", steps),
        extra=f'executor = "slurm"\nslurm = {{ poll_interval_s = {poll} }}\n',
    )
    daemon = Daemon(lab, env=cluster.env).start()
    try:
        wait_for(daemon.scanned, 60, "the start-up scan")
        lab.user.git("pull", "-q", "--ff-only", "origin", "main")
        lab.user.write("s0.txt", "c\nb\na\n")
        lab.user.git("commit", "-qam", "new input")
        lab.user.git("push", "-q", "origin", "HEAD:main")
        tip = lab.user.head()
        job = wait_for(
            lambda: next(
                (j for j in daemon.jobs() if j["target"] == tip and j["state"] == "succeeded"),
                None,
            ),
            60 + 10 * steps,
            "the rerun",
        )
        detail = daemon.get(f"/api/jobs/{job['id']}")
    finally:
        daemon.stop()
    added = git("log", "--format=%s", f"{tip}..main", cwd=lab.bare).splitlines()
    require(len(added) == steps, f"rerund added {added}, not {steps} commits")
    last = git("show", f"main:s{steps}.txt", cwd=lab.bare).strip()
    return [float(step["duration_s"]) for step in detail["steps"]], last


def plain_sbatch(
    cluster: SlurmCluster, root: Path, steps: int, poll: float
) -> tuple[list[float], str]:
    """Each job's time from submission to its end, and the last output."""
    work = root / "plain"
    work.mkdir()
    (work / "s0.txt").write_text("c\nb\na\n")
    env = {**os.environ, **cluster.env}
    times = []
    for k in range(steps):
        started = time.monotonic()
        script = f"#!/bin/sh\n/bin/sh -c 'tac s{k}.txt > s{k + 1}.txt'\n"
        slurm_id = subprocess.run(
            ["sbatch", "--parsable", f"--chdir={work}", f"--output={work}/{k}.out"],
            input=script, env=env, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        while True:
            shown = subprocess.run(
                ["scontrol", "show", "job", "-o", slurm_id],
                env=env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            if "JobState=COMPLETED" in shown:
                break
            if not any(f"JobState={state}" in shown for state in _WAITING):
                raise RuntimeError(shown)
            time.sleep(poll)
        times.append(time.monotonic() - started)
    return times, (work / f"s{steps}.txt").read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 steps")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args()
    steps = args.steps or (4 if args.quick else 10)
    with scratch_dir("slurm") as root:
        progress("starting the single-node Slurm cluster")
        with slurm_cluster() as cluster:
            progress(f"{steps} steps through rerund serve (executor = slurm)")
            rerund, rerund_last = through_rerund(cluster, root / "rerund", steps, args.poll)
            progress(f"{steps} steps by plain sbatch")
            plain, plain_last = plain_sbatch(cluster, root, steps, args.poll)
    require(
        rerund_last == plain_last,
        f"s{steps}.txt differs: rerund {rerund_last!r}, sbatch {plain_last!r}",
    )
    mean_rerund, mean_plain = statistics.mean(rerund), statistics.mean(plain)
    overhead = (mean_rerund - mean_plain) / mean_plain
    write_results(
        "bench_slurm",
        {"machine": machine_info(), "steps": steps, "poll_s": args.poll, "rerund_s": rerund,
         "sbatch_s": plain, "overhead": overhead},
    )  # fmt: skip
    rows = [
        [what, f"{statistics.mean(times):.3f} s", f"{statistics.median(times):.3f} s"]
        for what, times in (
            ("plain `sbatch` + `scontrol show job` polling", plain),
            ('through `rerund serve` (`executor = "slurm"`)', rerund),
        )
    ]
    print(markdown_table(["one step on Slurm", "mean", "median"], rows))
    met = "meets" if overhead <= 0.10 else "misses"
    print(
        f"\nOverhead per step: **{overhead * 100:+.1f} %** ({met} <= 10 %). {steps} steps,"
        f" polled every {args.poll} s both ways; the same last output both ways."
    )


if __name__ == "__main__":
    main()
