"""Benchmark: least work (issue 10) — parallel steps, early cutoff, reuse — against DataLad.

Every dataset is made with the real ``datalad create -c text2git`` and real
``datalad run`` records of ``sh code/step.sh {inputs} {outputs}``, where
``code/step.sh`` sleeps ``$BENCH_SLEEP`` seconds (0 while building) and then
derives its output from its input. In fresh ``cp -a`` copies:

* **wide**: 8 independent chains of 3 steps, every raw file changed; 1 s per
  step. ``rerund rerun -J 8`` against ``datalad rerun --since=BASE`` (the 24
  records, one after another). Target: rerund <= 1.2 x the 3 s critical path.
* **cutoff**: a 3-step chain whose last step takes 5 s; a comment is added to
  the first step's script. ``rerund rerun`` (the first step reproduces its
  output, the other two are cut off) against ``datalad rerun --since=BASE``.
  Target: rerund < 1 s, DataLad > 5 s.
* **revert**: a 10-step chain of 1 s steps; the raw data is fixed and rerun,
  then the fix is reverted. ``rerund rerun`` (every output restored from
  history) against ``datalad rerun --since=FIX`` (the 10 reruns again).
  Target: rerund < 1 s, DataLad > 10 s.

rerund and DataLad must end with the same outputs (the same ``out`` tree, and
the same commit count in the wide case), rerund must make no commit in the
cutoff case and reuse every output in the revert case, or the run fails (exit
code 1). The wall-time targets are reported, not enforced (a shared machine).
``--quick``: 8 chains of 2 steps, a 5-step revert chain, 0.5 s steps (2 s last
step in the cutoff case).

    python bench/bench_leastwork.py [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    DATALAD,
    PYTHON,
    fmt_s,
    git,
    machine_info,
    markdown_table,
    progress,
    require,
    run,
    run_timed,
    scratch_dir,
    write_results,
)

STEP = (
    'sleep "${BENCH_SLEEP:-0}"\n# derive\n'
    'mkdir -p "$(dirname "$2")"\n(cat "$1"; echo step) > "$2"\n'
)
# The installed console script may predate this checkout's layout: run the package itself.
RERUND = (PYTHON, "-m", "rerund")
BUILD_ENV = {**os.environ, "BENCH_SLEEP": "0"}
CHAINS = 8


@dataclass(frozen=True)
class Sizes:
    """How big each case is."""

    chain_steps: int  # steps per chain in the wide case
    revert_steps: int
    step_s: float
    last_s: float  # the cutoff case's last step


FULL = Sizes(chain_steps=3, revert_steps=10, step_s=1.0, last_s=5.0)
QUICK = Sizes(chain_steps=2, revert_steps=5, step_s=0.5, last_s=2.0)


def _cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _timed(argv: list[Any], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (user + system, children included) of one run."""
    before = _cpu_s()
    took = run_timed(argv, cwd, env=env)
    return took.seconds, _cpu_s() - before


def _env(sleep_s: float) -> dict[str, str]:
    return {**os.environ, "BENCH_SLEEP": str(sleep_s)}


def _dataset(path: Path) -> Path:
    run([DATALAD, "create", "-c", "text2git", str(path)], path.parent, env=BUILD_ENV)
    (path / "code").mkdir()
    (path / "code" / "step.sh").write_text(STEP)
    return path


def _save(ds: Path, message: str) -> str:
    run([DATALAD, "save", "-m", message], ds, env=BUILD_ENV)
    return git(ds, "rev-parse", "HEAD")


def _record(ds: Path, name: str, source: str, target: str, script: str = "code/step.sh") -> None:
    cmd = f"sh {script} {{inputs}} {{outputs}}"
    argv = [DATALAD, "run", "-m", name, "-i", source, "-o", target, cmd]
    run(argv, ds, env=BUILD_ENV)


def _copy(ds: Path, name: str) -> Path:
    dest = ds.parent / name
    shutil.copytree(ds, dest, symlinks=True)
    return dest


def _commits(ds: Path, base: str) -> int:
    return len(git(ds, "rev-list", f"{base}..HEAD").split())


def wide(root: Path, sizes: Sizes) -> dict[str, Any]:
    ds = _dataset(root / "wide")
    for chain in range(CHAINS):
        (ds / "raw").mkdir(exist_ok=True)
        (ds / "raw" / f"c{chain}.txt").write_text(f"{chain}\n")
    base = _save(ds, "raw data and code")
    for chain in range(CHAINS):
        previous = f"raw/c{chain}.txt"
        for step in range(sizes.chain_steps):
            out = f"out/c{chain}-s{step}.txt"
            _record(ds, f"c{chain}-s{step}", previous, out)
            previous = out
    for chain in range(CHAINS):
        (ds / "raw" / f"c{chain}.txt").write_text(f"{chain} fixed\n")
    changed = _save(ds, "fix every raw file")
    ours, theirs = _copy(ds, "wide-rerund"), _copy(ds, "wide-datalad")
    progress(f"wide: rerund rerun -J {CHAINS}")
    mine_s, mine_cpu = _timed([*RERUND, "rerun", "-J", str(CHAINS)], ours, _env(sizes.step_s))
    progress("wide: datalad rerun --since=BASE")
    dl = run_timed([DATALAD, "rerun", "--since", base], theirs, env=_env(sizes.step_s))
    return {
        "rerund_s": mine_s,
        "rerund_cpu_s": mine_cpu,
        "datalad_s": dl.seconds,
        "rerund_commits": _commits(ours, changed),
        "datalad_commits": _commits(theirs, changed),
        "same_tree": git(ours, "rev-parse", "HEAD:out") == git(theirs, "rev-parse", "HEAD:out"),
    }


def cutoff(root: Path, sizes: Sizes) -> dict[str, Any]:
    ds = _dataset(root / "cutoff")
    (ds / "code" / "first.sh").write_text(STEP.replace("${BENCH_SLEEP:-0}", "0"))
    (ds / "code" / "last.sh").write_text(STEP.replace("${BENCH_SLEEP:-0}", "${BENCH_LAST:-0}"))
    (ds / "raw.txt").write_text("raw\n")
    base = _save(ds, "raw data and code")
    _record(ds, "first", "raw.txt", "a.txt", "code/first.sh")
    _record(ds, "middle", "a.txt", "b.txt")
    _record(ds, "last", "b.txt", "c.txt", "code/last.sh")
    script = ds / "code" / "first.sh"
    script.write_text("# a comment only\n" + script.read_text())
    changed = _save(ds, "comment the first script")
    ours, theirs = _copy(ds, "cutoff-rerund"), _copy(ds, "cutoff-datalad")
    env = {**_env(0), "BENCH_LAST": str(sizes.last_s)}
    progress("cutoff: rerund rerun")
    mine_s, mine_cpu = _timed([*RERUND, "rerun"], ours, env)
    progress("cutoff: datalad rerun --since=BASE")
    dl = run_timed([DATALAD, "rerun", "--since", base], theirs, env=env)
    return {
        "rerund_s": mine_s,
        "rerund_cpu_s": mine_cpu,
        "datalad_s": dl.seconds,
        "rerund_commits": _commits(ours, changed),
        "same_tree": _tree(ours) == _tree(theirs),
    }


def _tree(ds: Path) -> str:
    return git(ds, "rev-parse", "HEAD^{tree}")


def revert(root: Path, sizes: Sizes) -> dict[str, Any]:
    ds = _dataset(root / "revert")
    (ds / "raw.txt").write_text("raw\n")
    _save(ds, "raw data and code")
    previous = "raw.txt"
    for step in range(sizes.revert_steps):
        out = f"out/s{step}.txt"
        _record(ds, f"s{step}", previous, out)
        previous = out
    (ds / "raw.txt").write_text("raw, fixed\n")
    fix = _save(ds, "fix raw data")
    run([*RERUND, "rerun"], ds, env=BUILD_ENV)
    git(ds, "revert", "--no-edit", fix)
    reverted = git(ds, "rev-parse", "HEAD")
    ours, theirs = _copy(ds, "revert-rerund"), _copy(ds, "revert-datalad")
    progress("revert: rerund rerun")
    mine_s, mine_cpu = _timed([*RERUND, "rerun"], ours, _env(sizes.step_s))
    progress("revert: datalad rerun --since=FIX")
    dl = run_timed([DATALAD, "rerun", "--since", fix], theirs, env=_env(sizes.step_s))
    reused = git(ours, "log", "--format=%B", f"{reverted}..HEAD").count('"reused"')
    return {
        "rerund_s": mine_s,
        "rerund_cpu_s": mine_cpu,
        "datalad_s": dl.seconds,
        "reused": reused,
        "same_tree": git(ours, "rev-parse", "HEAD:out") == git(theirs, "rev-parse", "HEAD:out"),
    }


def check(results: dict[str, Any], sizes: Sizes) -> None:
    """rerund did the same work as DataLad, and no more: else the figures are void."""
    wide_, cut, rev = results["wide"], results["cutoff"], results["revert"]
    require(wide_["same_tree"], "wide: rerund's outputs differ from DataLad's")
    require(
        wide_["rerund_commits"] == wide_["datalad_commits"] == CHAINS * sizes.chain_steps,
        f"wide: {wide_['rerund_commits']} commits by rerund, {wide_['datalad_commits']} by DataLad",
    )
    require(cut["same_tree"], "cutoff: rerund's tree differs from DataLad's")
    require(cut["rerund_commits"] == 0, f"cutoff: rerund made {cut['rerund_commits']} commits")
    require(rev["same_tree"], "revert: rerund's outputs differ from DataLad's")
    require(
        rev["reused"] == sizes.revert_steps,
        f"revert: {rev['reused']} of {sizes.revert_steps} outputs reused",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller chains, shorter steps")
    parser.add_argument("--keep", action="store_true", help="keep the datasets")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    with scratch_dir("leastwork", keep=args.keep) as root:
        results = {
            "wide": wide(root, sizes),
            "cutoff": cutoff(root, sizes),
            "revert": revert(root, sizes),
        }
    check(results, sizes)
    load = f"{os.getloadavg()[0]:.1f}"
    steps = CHAINS * sizes.chain_steps
    critical = sizes.chain_steps * sizes.step_s
    w, c, r = results["wide"], results["cutoff"], results["revert"]
    rows = [
        [
            f"{CHAINS} chains x {sizes.chain_steps} steps of {fmt_s(sizes.step_s)},"
            " every raw file changed",
            f"`rerund rerun -J {CHAINS}`: **{fmt_s(w['rerund_s'])}**"
            f" (CPU {fmt_s(w['rerund_cpu_s'])}), {w['rerund_commits']} commits;"
            f" target <= 1.2 x {fmt_s(critical)} = {fmt_s(1.2 * critical)}",
            f"`datalad rerun --since=BASE`: {fmt_s(w['datalad_s'])},"
            f" {w['datalad_commits']} commits",
            f"same outputs, {steps} steps each",
        ],
        [
            f"comment added to the first of 3 steps, last step {fmt_s(sizes.last_s)}",
            f"`rerund rerun`: **{fmt_s(c['rerund_s'])}** (CPU {fmt_s(c['rerund_cpu_s'])}),"
            " 1 identical, 2 cut off, no commit; target < 1 s",
            f"`datalad rerun --since=BASE`: {fmt_s(c['datalad_s'])}",
            "same tree",
        ],
        [
            f"revert of a raw fix, {sizes.revert_steps}-step chain of {fmt_s(sizes.step_s)} steps",
            f"`rerund rerun`: **{fmt_s(r['rerund_s'])}** (CPU {fmt_s(r['rerund_cpu_s'])}),"
            f" {r['reused']} of {sizes.revert_steps} reused; target < 1 s",
            f"`datalad rerun --since=FIX`: {fmt_s(r['datalad_s'])}",
            "same outputs",
        ],
    ]
    print(markdown_table(["case", "rerund", "DataLad", "check"], rows))
    print(
        f"\nWall times include waiting for the shared machine (1-minute load average {load} at"
        " the end); the CPU figure is what rerund and its git children spent."
    )
    write_results("bench_leastwork", {"machine": machine_info(), **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
