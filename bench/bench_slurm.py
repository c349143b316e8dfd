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
the target is <= 10 %.

    python bench/bench_slurm.py [--steps 10] [--poll 0.2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

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


def through_rerund(cluster: SlurmCluster, root: Path, steps: int, poll: float) -> list[float]:
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
    assert len(git("log", "--format=%s", f"{tip}..main", cwd=lab.bare).splitlines()) == steps
    return [float(step["duration_s"]) for step in detail["steps"]]


def plain_sbatch(cluster: SlurmCluster, root: Path, steps: int, poll: float) -> list[float]:
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
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--poll", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp, slurm_cluster() as cluster:
        root = Path(tmp)
        rerund = through_rerund(cluster, root / "rerund", args.steps, args.poll)
        plain = plain_sbatch(cluster, root, args.steps, args.poll)
    mean_rerund, mean_plain = statistics.mean(rerund), statistics.mean(plain)
    overhead = (mean_rerund - mean_plain) / mean_plain
    print(f"steps: {args.steps}, poll interval: {args.poll} s")
    for what, times in (("plain sbatch + scontrol", plain), ("through rerund", rerund)):
        mean, median = statistics.mean(times), statistics.median(times)
        print(f"{what:<24} mean {mean:.3f} s per step (median {median:.3f})")
    print(f"overhead per step: {overhead * 100:+.1f} % (target <= 10 %)")


if __name__ == "__main__":
    main()
