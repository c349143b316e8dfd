"""/healthz latency while steps run and webhooks pour in (issue 8's target: p99 < 50 ms).

    python bench/bench_health.py [--quick] [--steps N] [--posts N]

``max_concurrent_steps`` repositories (DataLad datasets published to bare
repositories) each hold one stale run record whose command sleeps, so every
step slot is busy; while they run, 500 signed GitHub push deliveries (each
its own delivery id) are posted from 8 threads, and a sampler asks
``/healthz`` every 20 ms from the first post for 20 s (the steps still
running). Printed: the sampler's p50, p99 and max. Every delivery must be
accepted (202) and every step slot still busy when sampling ends, or the run
fails (exit code 1). ``--quick``: 2 step slots, 100 deliveries, 8 s of sampling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_service import Daemon, _config, free_port
from benchlib import (
    DATALAD,
    git,
    machine_info,
    markdown_table,
    progress,
    require,
    run,
    scratch_dir,
    write_results,
)
from rerund.triggers.webhooks import sign

SECRET = "bench-secret"  # noqa: S105 - a loopback benchmark's own secret
SLEEP_S = 60


def _repository(root: Path, name: str) -> Path:
    """A dataset with one record made stale by a later commit, published to a bare repo."""
    work = root / "ds" / name
    run([DATALAD, "create", "-c", "text2git", str(work)], root)
    (work / "in.txt").write_text("1\n")
    run([DATALAD, "save", "-m", "input"], work)
    record = {
        "cmd": f"sleep {SLEEP_S}; cp in.txt out.txt",
        "exit": 0,
        "chain": [],
        "inputs": ["in.txt"],
        "outputs": ["out.txt"],
        "extra_inputs": [],
        "pwd": ".",
    }
    (work / "out.txt").write_text("1\n")
    message = (
        "[DATALAD RUNCMD] copy\n\n=== Do not change lines below ===\n"
        f"{json.dumps(record, indent=1)}\n^^^ Do not change lines above ^^^"
    )
    git(work, "add", "out.txt")
    git(work, "commit", "-q", "-m", message)
    (work / "in.txt").write_text("2\n")
    git(work, "commit", "-q", "-am", "change the input")
    bare = root / "srv" / f"{name}.git"
    run(["git", "init", "-q", "--bare", str(bare)], root)
    git(work, "push", "-q", str(bare), "HEAD:refs/heads/main", "git-annex")
    git(bare, "symbolic-ref", "HEAD", "refs/heads/main")
    return bare


def _post(port: int, name: str, number: int, tip: str) -> int:
    body = json.dumps(
        {
            "ref": "refs/heads/main",
            "before": tip,
            "after": tip,
            "repository": {"full_name": name},
        }
    ).encode()
    headers = sign("github", body, SECRET)
    headers["X-GitHub-Delivery"] = f"bench-{number}-{time.time_ns()}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/github/{name}", data=body, headers=headers
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http only
        return int(response.status)


def _start(root: Path, config: Path, port: int) -> Daemon:
    """bench_service's Daemon, started as ``python -m rerund`` (whatever the PATH holds)."""
    daemon = Daemon.__new__(Daemon)
    daemon.root, daemon.port = root, port
    with (root / "daemon.log").open("ab") as log:
        daemon.process = subprocess.Popen(
            [sys.executable, "-m", "rerund", "serve", "--config", str(config)],
            cwd=root,
            stdout=log,
            stderr=log,
        )
    daemon.wait(lambda: daemon.get("/healthz") is not None, 30)
    return daemon


def _steps_running(daemon: Daemon) -> int:
    """Steps whose command is running now (not jobs still cloning or planning)."""
    jobs = (daemon.get("/api/jobs") or {"jobs": []})["jobs"]
    running = [job["id"] for job in jobs if job["state"] == "running"]
    details = [daemon.get(f"/api/jobs/{job_id}") or {"steps": []} for job_id in running]
    return sum(step["state"] == "running" for job in details for step in job["steps"])


def bench(root: Path, steps: int, posts: int, sample_s: float) -> dict[str, Any]:
    progress(f"building {steps} repositories")
    names = [f"r{number}" for number in range(steps)]
    bares = {name: _repository(root, name) for name in names}
    tips = {name: git(bare, "rev-parse", "main") for name, bare in bares.items()}
    port = free_port()
    repos = "".join(
        f'[[repos]]\nname = "{name}"\nremote = "{bare}"\ngithub_secret = "{SECRET}"\n'
        for name, bare in bares.items()
    )
    limits = f"[limits]\nmax_concurrent_steps = {steps}\nshutdown_timeout_s = 1\n"
    config = _config(root, port, limits + repos)
    daemon = _start(root, config, port)
    try:
        progress("waiting for every step slot to be busy")
        daemon.wait(lambda: _steps_running(daemon) == steps, 300)
        samples: list[float] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                started = time.monotonic()
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30):
                    pass
                samples.append(time.monotonic() - started)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()
        progress(f"posting {posts} deliveries while {steps} steps run")
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda n: _post(port, names[n % steps], n, tips[names[n % steps]]),
                    range(posts),
                )
            )
        posting_s = time.monotonic() - started
        time.sleep(max(0.0, sample_s - posting_s))  # the steps still run: keep sampling
        done.set()
        sampler.join()
        busy = _steps_running(daemon)
    finally:
        daemon.stop()
    require(busy == steps, f"only {busy} of {steps} steps still ran when sampling ended")
    require(len(samples) > 10, f"only {len(samples)} /healthz answers")
    accepted = sum(status == 202 for status in statuses)
    require(accepted == posts, f"only {accepted} of {posts} deliveries accepted (202)")
    ordered = sorted(samples)
    return {
        "steps_running": steps,
        "posts": posts,
        "posts_accepted": accepted,
        "sampled_s": sample_s,
        "posting_s": round(posting_s, 2),
        "healthz_samples": len(ordered),
        "healthz_p50_ms": round(statistics.median(ordered) * 1000, 1),
        "healthz_p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1),
        "healthz_max_ms": round(ordered[-1] * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 slots, 100 posts, 8 s")
    parser.add_argument("--steps", type=int, help="max_concurrent_steps")
    parser.add_argument("--posts", type=int)
    args = parser.parse_args()
    steps = args.steps or (2 if args.quick else 8)
    posts = args.posts or (100 if args.quick else 500)
    with scratch_dir("health") as root:
        results = bench(root, steps, posts, 8.0 if args.quick else 20.0)
    write_results("health", {"machine": machine_info(), **results})
    print(
        markdown_table(
            ["steps running", "deliveries posted (8 threads)", "accepted", "/healthz answers",
             "p50", "p99", "max", "target"],
            [[str(steps), f"{posts} in {results['posting_s']:.1f} s",
              str(results["posts_accepted"]), str(results["healthz_samples"]),
              f"{results['healthz_p50_ms']:.1f} ms", f"{results['healthz_p99_ms']:.1f} ms",
              f"{results['healthz_max_ms']:.1f} ms",
              "p99 < 50 ms: " + ("met" if results["healthz_p99_ms"] < 50 else "missed")]],
        )
    )  # fmt: skip
    print(
        f"\n`/healthz` asked every 20 ms for {results['sampled_s']:.0f} s from the first"
        f" delivery, while {steps} steps (every step slot) ran."
    )


if __name__ == "__main__":
    main()
