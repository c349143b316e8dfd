"""Daemon figures: webhook ingest under load, hook-to-first-step latency, idle memory.

    python bench/bench_service.py [--quick]

* ingest: wrk (Debian's package) posts signed GitHub push deliveries, each
  with its own delivery id, to a running ``rerund serve`` on loopback. The
  deliveries name a moving branch tip (real commits of the repository, one
  after the other), so they queue real jobs, which the daemon's workers run
  while the load goes on, and later deliveries coalesce into the queued job.
  Afterwards every delivery wrk saw answered must be stored, none answered
  with an error, jobs queued and coalesced, and none failed.
* latency: a push through the installed post-receive hook; from the hook's
  spool file (its name is the hook's clock, in ns) to the first step's start
  as the store recorded it.
* memory: an idle daemon serving 100 bare repositories (``repos_dir``):
  resident memory (VmRSS) once its start-up jobs are done.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    BENCH_DIR,
    RERUND,
    DisagreementError,
    machine_info,
    markdown_table,
    progress,
    require,
    run,
    scratch_dir,
    write_results,
)
from rerund.triggers.webhooks import sign

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "webhooks"
TIPS = 200  # commits the deliveries step through as the branch's tip
# The benchmarks' repositories hold only their own commits: every push may run.
TRUST = '[security]\ntrust = "any"\n'


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    def __init__(self, root: Path, config: Path, port: int, env: dict[str, str] | None = None):
        self.root = root
        self.port = port
        log = (root / "daemon.log").open("ab")
        self.process = subprocess.Popen(
            [str(RERUND), "serve", "--config", str(config)],
            cwd=root,
            stdout=log,
            stderr=log,
            env={**os.environ, **(env or {})},
        )
        self.wait(lambda: self.get("/healthz") is not None, 30)

    def get(self, path: str) -> Any:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def idle(self) -> bool:
        jobs = (self.get("/api/jobs?limit=1000") or {}).get("jobs", [])
        return not any(job["state"] in ("queued", "running") for job in jobs)

    @staticmethod
    def wait(condition: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise DisagreementError(f"timed out after {timeout_s} s waiting for {condition}")
            time.sleep(0.05)

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)


def _config(root: Path, port: int, repos: str, top: str = "") -> Path:
    config = root / "rerund.toml"
    config.write_text(
        f'state_dir = "state"\n{top}{TRUST}[http]\nlisten = "127.0.0.1:{port}"\n{repos}',
        encoding="utf-8",
    )
    return config


def _bare_with_commit(path: Path, commits: int = 1) -> list[str]:
    """A bare repository whose main is a chain of ``commits`` empty commits; their ids."""
    run(["git", "init", "-q", "--bare", str(path)], path.parent)
    run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], path)
    blob_tree = subprocess.run(
        ["git", "mktree"], cwd=path, input="", capture_output=True, text=True, check=True
    ).stdout.strip()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    chain: list[str] = []
    for number in range(commits):
        parent = ["-p", chain[-1]] if chain else []
        chain.append(
            subprocess.run(
                ["git", "commit-tree", blob_tree, *parent, "-m", f"commit {number}"],
                cwd=path, capture_output=True, text=True, check=True, env=env,
            ).stdout.strip()
        )  # fmt: skip
    run(["git", "update-ref", "refs/heads/main", chain[-1]], path)
    return chain


def bench_ingest(root: Path, seconds: int, connections: int) -> dict[str, Any]:
    port = free_port()
    bare = root / "lab.git"
    chain = _bare_with_commit(bare, TIPS)
    config = _config(
        root,
        port,
        f'[[repos]]\nname = "lab"\nremote = "{bare}"\nbranch = "main"\n'
        'github_secret = "bench-secret"\nwatch = false\n',
    )
    daemon = Daemon(root, config, port)
    try:
        daemon.wait(daemon.idle, 30)
        sample = json.loads((SAMPLE / "github-push-new-branch.json").read_text())
        # One body per step of the chain: the branch moving from one commit to the next.
        lines = []
        for before, after in itertools.pairwise(chain):
            sample.update(ref="refs/heads/main", before=before, after=after, created=False)
            body = json.dumps(sample)
            lines.append(f"{sign('github', body.encode(), 'bench-secret')['X-Hub-Signature-256']}"
                         f"\t{body}\n")  # fmt: skip
        (root / "bodies.tsv").write_text("".join(lines), encoding="utf-8")
        env = {**os.environ, "RERUND_BENCH_BODIES": str(root / "bodies.tsv")}
        progress(f"wrk: {seconds} s, {connections} connections")
        out = subprocess.run(
            [
                "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                "-s", str(BENCH_DIR / "wrk_github.lua"),
                f"http://127.0.0.1:{port}/hooks/github/lab",
            ],
            capture_output=True, text=True, check=True, env=env,
        ).stdout  # fmt: skip
        rss = daemon.rss_mb()
        daemon.wait(daemon.idle, 120)  # the queued jobs run to their end
    finally:
        daemon.stop()
    completed = int(_match(r"(\d+) requests in", out))
    rejected = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    with sqlite3.connect(root / "state" / "rerund.sqlite") as db:
        stored = db.execute("SELECT COUNT(*) FROM events WHERE source = 'github'").fetchone()[0]
        outcomes = dict(
            db.execute(
                "SELECT outcome, COUNT(*) FROM events WHERE source = 'github' GROUP BY outcome"
            ).fetchall()
        )
        jobs = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    result = {
        "requests_per_s": float(_match(r"Requests/sec:\s+([\d.]+)", out)),
        "p50": _latency(out, "50%"),
        "p99": _latency(out, "99%"),
        "completed": completed,
        "non_2xx": int(rejected.group(1)) if rejected else 0,
        "stored": stored,
        "all_stored": stored >= completed,
        "outcomes": outcomes,
        "jobs": jobs,
        "rss_mb_after": round(rss, 1),
        "wrk": out,
    }
    check_ingest(result)
    return result


def check_ingest(result: dict[str, Any]) -> None:
    """Every answered delivery stored, none refused, real jobs queued, coalesced, none failed."""
    require(result["completed"] > 0, "wrk completed no request")
    require(result["non_2xx"] == 0, f"{result['non_2xx']} deliveries were answered with errors")
    require(
        result["all_stored"],
        f"{result['completed']} deliveries answered but only {result['stored']} stored",
    )
    outcomes, jobs = result["outcomes"], result["jobs"]
    require(outcomes.get("queued", 0) > 0, f"no delivery queued a job: {outcomes}")
    require(outcomes.get("coalesced", 0) > 0, f"no delivery coalesced into a job: {outcomes}")
    require(jobs.get("failed", 0) == 0, f"jobs failed under load: {jobs}")
    require(
        jobs.get("succeeded", 0) >= outcomes["queued"],
        f"{outcomes['queued']} jobs queued but only {jobs.get('succeeded', 0)} succeeded",
    )


def _match(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise DisagreementError(f"wrk's report lacks {pattern!r}:\n{text}")
    return found.group(1)


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"{re.escape(percentile)}\s+([\d.]+)(us|ms|s)", out)
    if match is None:
        raise DisagreementError(f"wrk's report lacks the {percentile} latency:\n{out}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def bench_latency(root: Path, repeats: int) -> dict[str, Any]:
    """Hook notification -> first step started, through a real push and the real hook."""
    port = free_port()
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    ds = root / "ds"
    subprocess.run(
        ["datalad", "create", "-c", "text2git", str(ds)], check=True, capture_output=True, env=env
    )
    (ds / "raw.txt").write_text("1\n")
    subprocess.run(
        ["datalad", "save", "-m", "raw"], cwd=ds, check=True, capture_output=True, env=env
    )
    subprocess.run(
        ["datalad", "run", "-m", "copy", "-i", "raw.txt", "-o", "out.txt", "cp {inputs} {outputs}"],
        cwd=ds, check=True, capture_output=True, env=env,
    )  # fmt: skip
    bare = root / "lab.git"
    run(["git", "init", "-q", "--bare", str(bare)], root)
    run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], bare)
    run(["git", "push", "-q", str(bare), "HEAD:refs/heads/main", "git-annex"], ds)
    config = _config(
        root, port, f'[[repos]]\nname = "lab"\nremote = "{bare}"\nbranch = "main"\nwatch = false\n'
    )
    run([str(RERUND), "hooks", "install", str(bare), "--config", str(config)], root)
    user = root / "user"
    run(["git", "clone", "-q", str(bare), str(user)], root)
    daemon = Daemon(root, config, port)
    delays: list[float] = []
    try:
        daemon.wait(lambda: _jobs(daemon) > 0 and daemon.idle(), 60)
        for number in range(repeats):
            jobs_before = _jobs(daemon)
            (user / "raw.txt").write_text(f"{number + 2}\n")
            subprocess.run(
                ["git", "commit", "-qam", f"raw {number}"], cwd=user, check=True, env=env
            )
            subprocess.run(
                ["git", "push", "-q", "origin", "HEAD:main"], cwd=user, check=True, env=env
            )
            daemon.wait(lambda n=jobs_before: _jobs(daemon) > n and daemon.idle(), 60)
            run(["git", "pull", "-q", "--ff-only", "origin", "main"], user)
            require(
                (user / "out.txt").read_text() == f"{number + 2}\n",
                f"push {number}: the rerun did not land the new output",
            )
            delays.append(_hook_to_first_step(root) * 1000)
    finally:
        daemon.stop()
    return {"ms": delays, "median_ms": sorted(delays)[len(delays) // 2], "max_ms": max(delays)}


def _jobs(daemon: Daemon) -> int:
    return len(daemon.get("/api/jobs?limit=1000")["jobs"])


def _hook_to_first_step(root: Path) -> float:
    with sqlite3.connect(root / "state" / "rerund.sqlite") as db:
        (started,) = db.execute(
            "SELECT MIN(started_at) FROM steps WHERE job_id = (SELECT MAX(job_id) FROM steps)"
        ).fetchone()
    return float(started) - _hook_time_before(root, float(started))


def _hook_time_before(root: Path, moment: float) -> float:
    """When the hook ran for the push that started the step (not rerund's own push after it).

    The hook names its spool file after its own clock (ns); the daemon logs the name.
    """
    times = [
        int(json.loads(line)["file"].split("-")[0]) / 1e9
        for line in (root / "daemon.log").read_text().splitlines()
        if line.startswith("{") and '"spool file read"' in line
    ]
    return max(t for t in times if t <= moment)


def bench_memory(root: Path, repos: int) -> dict[str, Any]:
    server = root / "srv"
    server.mkdir()
    for number in range(repos):
        _bare_with_commit(server / f"repo{number:03d}.git")
    port = free_port()
    config = _config(root, port, "", top=f'repos_dir = "{server}"\n')
    daemon = Daemon(root, config, port)
    try:
        daemon.wait(
            lambda: daemon.idle() and len(daemon.get("/api/jobs?limit=1000")["jobs"]) >= repos, 300
        )
        time.sleep(2)
        rss = daemon.rss_mb()
        served = len(daemon.get("/api/repos")["repos"])
    finally:
        daemon.stop()
    return {"repos": served, "rss_mb": round(rss, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": machine_info()}
    rounds = []
    for _ in range(1 if args.quick else 3):  # this shared VM is noisy: report every round
        with scratch_dir("rerund-bench-ingest") as root:
            rounds.append(bench_ingest(root, 5 if args.quick else 15, 16))
    results["ingest_rounds"] = rounds
    results["ingest"] = sorted(rounds, key=lambda r: r["requests_per_s"])[len(rounds) // 2]
    with scratch_dir("rerund-bench-latency") as root:
        results["latency"] = bench_latency(root, 3 if args.quick else 10)
    with scratch_dir("rerund-bench-memory") as root:
        results["memory"] = bench_memory(root, 10 if args.quick else 100)
    write_results("bench_service", {k: v for k, v in results.items()})
    ingest, latency, memory = results["ingest"], results["latency"], results["memory"]
    print(
        markdown_table(
            ["figure", "measured", "target"],
            [
                [
                    "webhook deliveries/s (wrk, 16 connections)",
                    f"{ingest['requests_per_s']:.0f}",
                    ">= 2,000",
                ],
                [
                    "p50 / p99 latency",
                    f"{ingest['p50']:.2f} / {ingest['p99']:.2f} ms",
                    "p99 < 20 ms",
                ],
                [
                    "every round: deliveries/s, p99",
                    "; ".join(f"{r['requests_per_s']:.0f}, {r['p99']:.1f} ms" for r in rounds),
                    "",
                ],
                [
                    "deliveries answered / stored / refused",
                    f"{ingest['completed']:,} / {ingest['stored']:,} / {ingest['non_2xx']}",
                    "all stored, none refused",
                ],
                [
                    "jobs queued / deliveries coalesced into them (same round)",
                    f"{ingest['outcomes'].get('queued', 0):,}"
                    f" / {ingest['outcomes'].get('coalesced', 0):,}",
                    "every job succeeded",
                ],
                [
                    "hook -> first step, median / max",
                    f"{latency['median_ms']:.0f} / {latency['max_ms']:.0f} ms",
                    "< 200 ms",
                ],
                [
                    f"idle RSS with {memory['repos']} repositories",
                    f"{memory['rss_mb']} MB",
                    "< 100 MB",
                ],
            ],
        )
    )
    rounds_note = "median of 3 rounds" if not args.quick else "1 round"
    print(
        f"\nIngest: wrk -t1 -c16 for {5 if args.quick else 15} s ({rounds_note}), each delivery"
        f" moving main one commit on (a chain of {TIPS}), so jobs are queued and run meanwhile."
        f" Latency: {3 if args.quick else 10} pushes through the hook. Memory:"
        f" {memory['repos']} repositories."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
