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

    python bench/bench_leastwork.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
from pathlib import Path
from typing import Any

from benchlib import (
    DATALAD,
    PYTHON,
    fmt_s,
    git,
    machine_info,
    machine_table,
    markdown_table,
    progress,
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


def wide(root: Path) -> dict[str, Any]:
    ds = _dataset(root / "wide")
    for chain in range(8):
        (ds / "raw").mkdir(exist_ok=True)
        (ds / "raw" / f"c{chain}.txt").write_text(f"{chain}\n")
    base = _save(ds, "raw data and code")
    for chain in range(8):
        previous = f"raw/c{chain}.txt"
        for step in range(3):
            out = f"out/c{chain}-s{step}.txt"
            _record(ds, f"c{chain}-s{step}", previous, out)
            previous = out
    for chain in range(8):
        (ds / "raw" / f"c{chain}.txt").write_text(f"{chain} fixed\n")
    changed = _save(ds, "fix every raw file")
    ours, theirs = _copy(ds, "wide-rerund"), _copy(ds, "wide-datalad")
    progress("wide: rerund rerun -J 8")
    mine_s, mine_cpu = _timed([*RERUND, "rerun", "-J", "8"], ours, _env(1))
    progress("wide: datalad rerun --since=BASE")
    dl = run_timed([DATALAD, "rerun", "--since", base], theirs, env=_env(1))
    return {
        "rerund_s": mine_s,
        "rerund_cpu_s": mine_cpu,
        "datalad_s": dl.seconds,
        "rerund_commits": _commits(ours, changed),
        "datalad_commits": _commits(theirs, changed),
        "same_tree": git(ours, "rev-parse", "HEAD:out") == git(theirs, "rev-parse", "HEAD:out"),
    }


def cutoff(root: Path) -> dict[str, Any]:
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
    env = {**_env(0), "BENCH_LAST": "5"}
    progress("cutoff: rerund rerun")
    mine_s, mine_cpu = _timed([*RERUND, "rerun"], ours, env)
    progress("cutoff: datalad rerun --since=BASE")
    dl = run_timed([DATALAD, "rerun", "--since", base], theirs, env=env)
    return {
        "rerund_s": mine_s,
        "rerund_cpu_s": mine_cpu,
        "datalad_s": dl.seconds,
        "rerund_commits": _commits(ours, changed),
    }


def revert(root: Path) -> dict[str, Any]:
    ds = _dataset(root / "revert")
    (ds / "raw.txt").write_text("raw\n")
    _save(ds, "raw data and code")
    previous = "raw.txt"
    for step in range(10):
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
    mine_s, mine_cpu = _timed([*RERUND, "rerun"], ours, _env(1))
    progress("revert: datalad rerun --since=FIX")
    dl = run_timed([DATALAD, "rerun", "--since", fix], theirs, env=_env(1))
    reused = git(ours, "log", "--format=%B", f"{reverted}..HEAD").count('"reused"')
    return {
        "rerund_s": mine_s,
        "rerund_cpu_s": mine_cpu,
        "datalad_s": dl.seconds,
        "reused": reused,
        "same_tree": git(ours, "rev-parse", "HEAD:out") == git(theirs, "rev-parse", "HEAD:out"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the datasets")
    args = parser.parse_args()
    with scratch_dir("leastwork", keep=args.keep) as root:
        results = {"wide": wide(root), "cutoff": cutoff(root), "revert": revert(root)}
    info = machine_info()
    info["load average (1 min) at the end"] = f"{os.getloadavg()[0]:.1f}"
    rows = [
        [
            "8 chains x 3 steps of 1 s, every raw file changed",
            f"`rerund rerun -J 8`: **{fmt_s(results['wide']['rerund_s'])}**"
            f" (CPU {fmt_s(results['wide']['rerund_cpu_s'])})"
            f" ({results['wide']['rerund_commits']} commits; target <= 3.6 s)",
            f"`datalad rerun --since=BASE`: {fmt_s(results['wide']['datalad_s'])}"
            f" ({results['wide']['datalad_commits']} commits)",
            "same outputs" if results["wide"]["same_tree"] else "OUTPUTS DIFFER",
        ],
        [
            "comment added to the first of 3 steps, last step 5 s",
            f"`rerund rerun`: **{fmt_s(results['cutoff']['rerund_s'])}**"
            f" (CPU {fmt_s(results['cutoff']['rerund_cpu_s'])})"
            f" (1 identical, 2 cut off, {results['cutoff']['rerund_commits']} commits)",
            f"`datalad rerun --since=BASE`: {fmt_s(results['cutoff']['datalad_s'])}",
            "",
        ],
        [
            "revert of a raw fix, 10-step chain of 1 s steps",
            f"`rerund rerun`: **{fmt_s(results['revert']['rerund_s'])}**"
            f" (CPU {fmt_s(results['revert']['rerund_cpu_s'])})"
            f" ({results['revert']['reused']} of 10 reused)",
            f"`datalad rerun --since=FIX`: {fmt_s(results['revert']['datalad_s'])}",
            "same outputs" if results["revert"]["same_tree"] else "OUTPUTS DIFFER",
        ],
    ]
    print(machine_table(info))
    print()
    print(markdown_table(["case", "rerund", "DataLad", "check"], rows))
    write_results("leastwork", {"machine": info, **results})


if __name__ == "__main__":
    main()
