"""Benchmark: what the bubblewrap sandbox adds to a step, and what clone-per-job would cost.

1. One step's command (``true``) started N times plain (``/bin/sh -c``) and
   through ``Sandbox.wrap`` — unprivileged mode (user namespace, as the
   systemd unit runs it) and, when run as root, the root mode the daemon uses
   (uid switch with the work tree handed over and back). Median per start.
2. A 20-step chain (real ``datalad run`` records, ``tac`` each) replayed with
   ``rerund rerun --since=BASE`` with and without ``--sandbox``, in fresh copies;
   per-step difference of the medians.
3. Work-clone hygiene: pinning ``core.hooksPath`` costs no git call at all; a
   fresh clone per job would cost one ``git clone`` + checkout of the dataset.

    python bench/bench_sandbox.py [--starts N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rerund.run.sandbox import NOBODY, Sandbox

STEPS = 20


def _time(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _run(argv: list[str], cwd: Path) -> None:
    subprocess.run(argv, cwd=cwd, check=True, capture_output=True)


def starts(tree: Path, count: int) -> dict[str, float]:
    plain = ["/bin/sh", "-c", "true"]
    results = {"plain": _median_ms([_time(lambda: _run(plain, tree)) for _ in range(count)])}
    userns = Sandbox().wrap(plain, tree, tree)
    results["bwrap (user namespace)"] = _median_ms(
        [_time(lambda: _run(userns, tree)) for _ in range(count)]
    )
    if os.geteuid() == 0:
        root_mode = Sandbox(run_as=NOBODY)

        def once() -> None:
            with root_mode.handed_over(tree):
                _run(root_mode.wrap(plain, tree, tree), tree)

        results["bwrap (root daemon: uid switch + hand-over)"] = _median_ms(
            [_time(once) for _ in range(count)]
        )
    return results


def build_chain(path: Path) -> str:
    subprocess.run(
        ["datalad", "create", "-c", "text2git", str(path)], check=True, capture_output=True
    )
    (path / "s0.txt").write_text("".join(f"{i}\n" for i in range(100)), encoding="utf-8")
    subprocess.run(["datalad", "save", "-m", "raw"], cwd=path, check=True, capture_output=True)
    base = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True
    ).stdout.strip()
    for step in range(1, STEPS + 1):
        subprocess.run(
            ["datalad", "run", "-m", f"s{step}", "-i", f"s{step - 1}.txt", "-o", f"s{step}.txt",
             "tac {inputs} > {outputs}"],
            cwd=path, check=True, capture_output=True,
        )  # fmt: skip
    return base


def chain(root: Path, rounds: int) -> dict[str, float]:
    template = root / "chain"
    base = build_chain(template)
    results: dict[str, float] = {}
    for label, extra in (("plain", []), ("--sandbox", ["--sandbox"])):
        samples = []
        for number in range(rounds):
            copy = root / f"copy-{label.strip('-')}-{number}"
            shutil.copytree(template, copy, symlinks=True)
            argv = [sys.executable, "-m", "rerund", "rerun", *extra, f"--since={base}"]
            samples.append(_time(lambda argv=argv, copy=copy: _run(argv, copy)))
            shutil.rmtree(copy)
        results[label] = statistics.median(samples)
    return results


def clone_cost(root: Path, count: int) -> float:
    bare = root / "chain.git"
    _run(["git", "clone", "-q", "--bare", str(root / "chain"), str(bare)], root)
    samples = []
    for number in range(count):
        target = root / f"clone-{number}"
        samples.append(
            _time(lambda t=target: _run(["git", "clone", "-q", str(bare), str(t)], root))
        )
        shutil.rmtree(target)
    return _median_ms(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rerund-bench-sandbox-") as scratch:
        root = Path(scratch)
        tree = root / "tree"
        (tree / "sub").mkdir(parents=True)
        for index in range(20):
            (tree / "sub" / f"f{index}").write_text("x\n", encoding="utf-8")
        load = Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]
        print(f"machine: {os.cpu_count()} cores, load average {' '.join(load)} at start\n")
        print(f"## Starting one step's command ({args.starts} starts, median)\n")
        figures = starts(tree, args.starts)
        plain = figures["plain"]
        print("| how | per start | overhead |\n| --- | --- | --- |")
        for how, ms in figures.items():
            print(f"| {how} | {ms:.1f} ms | {ms - plain:+.1f} ms |")
        print(f"\n## 20-step chain, rerund rerun --since (median of {args.rounds})\n")
        times = chain(root, args.rounds)
        per_step = (times["--sandbox"] - times["plain"]) / STEPS * 1000
        print("| run | total | per step |\n| --- | --- | --- |")
        for label, total in times.items():
            print(f"| {label} | {total:.2f} s | {total / STEPS * 1000:.0f} ms |")
        print(f"\nsandbox overhead per step: {per_step:+.1f} ms")
        print(f"\n## Hygiene\n\nfresh clone per job: {clone_cost(root, 5):.0f} ms (median of 5);")
        print("core.hooksPath pinned through GIT_CONFIG_*: no git call, 0 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
