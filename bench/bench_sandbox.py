"""Benchmark: what the bubblewrap sandbox adds to a step, and what clone-per-job would cost.

1. One step's command (``true``) started N times plain (``/bin/sh -c``) and
   through ``Sandbox.wrap`` — unprivileged mode (user namespace, as the
   systemd unit runs it) and, when run as root, the root mode the daemon uses
   (uid switch with the work tree handed over and back). Median per start.
2. A chain of real ``datalad run`` records (``tac`` each; step 1 also writes
   the time, so every replay changes every output) replayed with
   ``rerund rerun --since=BASE`` with and without ``--sandbox``, in fresh
   copies; per-step difference of the medians. Both must add one commit per
   step with the same subjects and files, or the run fails (exit code 1).
3. Work-clone hygiene: pinning ``core.hooksPath`` costs no git call at all; a
   fresh clone per job would cost one ``git clone`` + checkout of the dataset.

    python bench/bench_sandbox.py [--quick] [--starts N] [--rounds R]

``--quick``: 20 starts and 2 rounds instead of 50 and 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import (
    DATALAD,
    git,
    machine_info,
    markdown_table,
    progress,
    require,
    scratch_dir,
    write_results,
)
from rerund.run.sandbox import NOBODY, Sandbox

STEPS = 20
FIRST = "date +%s%N > {outputs}; cat {inputs} >> {outputs}"


def _time(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _run(argv: list[str | Path], cwd: Path) -> None:
    subprocess.run([str(a) for a in argv], cwd=cwd, check=True, capture_output=True)


def starts(tree: Path, count: int) -> dict[str, float]:
    plain: list[str | Path] = ["/bin/sh", "-c", "true"]
    results = {
        "plain `/bin/sh -c`": _median_ms([_time(lambda: _run(plain, tree)) for _ in range(count)])
    }
    userns = list(Sandbox().wrap([str(a) for a in plain], tree, tree))
    results["bwrap (user namespace)"] = _median_ms(
        [_time(lambda: _run(userns, tree)) for _ in range(count)]
    )
    if os.geteuid() == 0:
        root_mode = Sandbox(run_as=NOBODY)

        def once() -> None:
            with root_mode.handed_over(tree):
                _run(list(root_mode.wrap([str(a) for a in plain], tree, tree)), tree)

        results["bwrap (root daemon: uid switch + hand-over)"] = _median_ms(
            [_time(once) for _ in range(count)]
        )
    return results


def build_chain(path: Path, steps: int) -> str:
    _run([DATALAD, "create", "-c", "text2git", str(path)], path.parent)
    (path / "s0.txt").write_text("".join(f"{i}\n" for i in range(100)), encoding="utf-8")
    _run([DATALAD, "save", "-m", "raw"], path)
    base = git(path, "rev-parse", "HEAD")
    for step in range(1, steps + 1):
        command = FIRST if step == 1 else "tac {inputs} > {outputs}"
        _run(
            [DATALAD, "run", "-m", f"s{step}", "-i", f"s{step - 1}.txt", "-o", f"s{step}.txt",
             command],
            path,
        )  # fmt: skip
    return base


def _added(copy: Path, tip: str) -> list[str]:
    """Subjects and files of the commits a replay added on ``tip``, oldest first."""
    require(git(copy, "status", "--porcelain") == "", f"the replay left changes in {copy}")
    log = git(copy, "log", "--reverse", "--format=@%s", "--name-only", f"{tip}..HEAD")
    return [line for line in log.splitlines() if line]


def chain(root: Path, steps: int, rounds: int) -> dict[str, float]:
    template = root / "chain"
    base = build_chain(template, steps)
    tip = git(template, "rev-parse", "HEAD")
    results: dict[str, float] = {}
    work: dict[str, list[str]] = {}
    for label, extra in (("`rerund rerun`", []), ("`rerund rerun --sandbox`", ["--sandbox"])):
        samples = []
        for number in range(rounds):
            progress(f"{label}, round {number + 1} of {rounds}")
            copy = root / f"copy-{len(extra)}-{number}"
            shutil.copytree(template, copy, symlinks=True)
            argv: list[str | Path] = [sys.executable, "-m", "rerund", "rerun", *extra,
                                      f"--since={base}"]  # fmt: skip
            samples.append(_time(lambda argv=argv, copy=copy: _run(argv, copy)))
            added = _added(copy, tip)
            require(
                sum(line.startswith("@") for line in added) == steps,
                f"{label} added {added}, not {steps} commits",
            )
            require(work.setdefault(label, added) == added, f"{label}'s rounds differ")
            shutil.rmtree(copy)
        results[label] = statistics.median(samples)
    plain, sandboxed = work.values()
    require(plain == sandboxed, f"plain and sandboxed replays differ: {plain} / {sandboxed}")
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
    parser.add_argument("--quick", action="store_true", help="20 starts, 2 rounds")
    parser.add_argument("--starts", type=int)
    parser.add_argument("--rounds", type=int)
    args = parser.parse_args()
    count = args.starts or (20 if args.quick else 50)
    rounds = args.rounds or (2 if args.quick else 3)
    steps = STEPS
    with scratch_dir("sandbox") as root:
        tree = root / "tree"
        (tree / "sub").mkdir(parents=True)
        for index in range(20):
            (tree / "sub" / f"f{index}").write_text("x\n", encoding="utf-8")
        progress(f"{count} starts of `true`, plain and sandboxed")
        figures = starts(tree, count)
        progress(f"a {steps}-step chain, replayed plain and sandboxed")
        times = chain(root, steps, rounds)
        clone_ms = clone_cost(root, 5)
    write_results(
        "bench_sandbox",
        {"machine": machine_info(), "starts_ms": figures, "chain_s": times, "clone_ms": clone_ms},
    )
    plain = next(iter(figures.values()))
    print(
        markdown_table(
            [f"starting one step's command (median of {count})", "per start", "overhead"],
            [[how, f"{ms:.1f} ms", f"{ms - plain:+.1f} ms"] for how, ms in figures.items()],
        )
    )
    (plain_s, sandbox_s) = times.values()
    print()
    print(
        markdown_table(
            [f"{steps}-step chain, `--since=BASE` (median of {rounds})", "total", "per step",
             "same commits"],
            [[label, f"{total:.2f} s", f"{total / steps * 1000:.0f} ms", f"yes ({steps})"]
             for label, total in times.items()],
        )
    )  # fmt: skip
    print(
        f"\nSandbox overhead per step: {(sandbox_s - plain_s) / steps * 1000:+.1f} ms."
        f" Hygiene: a fresh clone per job would cost {clone_ms:.0f} ms (`git clone`, median"
        " of 5); pinning `core.hooksPath` through `GIT_CONFIG_*` costs no git call."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
