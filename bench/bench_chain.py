"""Benchmark: per-step overhead of replaying a 20-step chain, rerund vs DataLad.

A dataset made with the real ``datalad create`` (``-c text2git``, and the
default where every file is annexed; ``--quick``: text2git only) gets
``raw.txt`` and then 20 real ``datalad run`` records::

    s1:      date +%s%N > {outputs}; cat {inputs} >> {outputs}    (raw.txt -> s1.txt)
    s2..s20: tac {inputs} > {outputs}                             (s<N-1>.txt -> s<N>.txt)

so every replay changes all 20 outputs and makes 20 commits. BASE is the commit
before s1, TIP the last record. Three times, in two fresh ``cp -a`` copies:

    datalad rerun --since=BASE TIP
    rerund rerun --since=BASE

each must add exactly 20 commits and leave a clean tree, and both must do the
same work: the same commit subjects in the same order, changing the same files
(anything else ends the benchmark with exit code 1). The commands' own
time is that of ``sh FILE`` (in a fresh copy, at the dataset root) for the
script written by ``rerund rerun --since=BASE --script FILE``. Per-step
overhead = (total - commands) / 20; the target is rerund <= 10% of DataLad's.

    python bench/bench_chain.py [--quick] [--keep]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    DATALAD,
    RERUND,
    Timing,
    fmt_s,
    fmt_timing,
    git,
    machine_info,
    markdown_table,
    progress,
    remove_tree,
    require,
    run,
    run_timed,
    scratch_dir,
    write_results,
)

STEPS = 20
REPETITIONS = 3
SCRIPT_RUNS = 5
FIRST_CMD = "date +%s%N > {outputs}; cat {inputs} >> {outputs}"
NEXT_CMD = "tac {inputs} > {outputs}"
RAW_LINES = 100
TARGET_PERCENT = 10.0
RERUND_FLAGS: list[str] = []
"""``--sandbox`` when asked: steps under bubblewrap, as the daemon runs them."""


@dataclass
class Chain:
    variant: str
    path: Path
    base: str
    tip: str


@dataclass
class VariantResult:
    variant: str
    datalad: Timing
    rerund: Timing
    commands: Timing

    @property
    def datalad_overhead(self) -> float:
        return (self.datalad.median - self.commands.median) / STEPS

    @property
    def rerund_overhead(self) -> float:
        return (self.rerund.median - self.commands.median) / STEPS

    @property
    def percent(self) -> float:
        return 100 * self.rerund_overhead / self.datalad_overhead

    def row(self) -> list[str]:
        verdict = "meets" if self.percent <= TARGET_PERCENT else "misses"
        return [
            self.variant,
            fmt_timing(self.datalad),
            fmt_timing(self.rerund),
            fmt_timing(self.commands),
            fmt_s(self.datalad_overhead),
            fmt_s(self.rerund_overhead),
            f"{self.percent:.1f}% ({verdict} ≤ {TARGET_PERCENT:.0f}%)",
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "steps": STEPS,
            "datalad_rerun": self.datalad.to_json(),
            "rerund_rerun": self.rerund.to_json(),
            "commands": self.commands.to_json(),
            "datalad_overhead_per_step_s": self.datalad_overhead,
            "rerund_overhead_per_step_s": self.rerund_overhead,
            "rerund_over_datalad_percent": self.percent,
            "target_percent": TARGET_PERCENT,
        }


def build_chain(root: Path, variant: str) -> Chain:
    """A real DataLad dataset with ``raw.txt`` and 20 ``datalad run`` records."""
    path = root / f"chain-{variant}"
    config = ["-c", "text2git"] if variant == "text2git" else []
    run([DATALAD, "create", *config, path], root)
    lines = "".join(f"{i} raw measurement {i * i % 97}\n" for i in range(RAW_LINES))
    (path / "raw.txt").write_text(lines, encoding="utf-8")
    run([DATALAD, "save", "-m", "Add raw.txt", "raw.txt"], path)
    base = git(path, "rev-parse", "HEAD")
    for n in range(1, STEPS + 1):
        source = "raw.txt" if n == 1 else f"s{n - 1}.txt"
        cmd = FIRST_CMD if n == 1 else NEXT_CMD
        run([DATALAD, "run", "-m", f"s{n}", "-i", source, "-o", f"s{n}.txt", cmd], path)
    tip = git(path, "rev-parse", "HEAD")
    check_replay(path, base, "datalad run (building the chain)")
    return Chain(variant, path, base, tip)


def check_replay(path: Path, since: str, label: str) -> tuple[str, str]:
    """Exactly ``STEPS`` new commits after ``since``, nothing left in the tree.

    Returns the work done, to compare between the tools: the new commits'
    subjects and the files each changed, in order.
    """
    made = int(git(path, "rev-list", "--count", f"{since}..HEAD"))
    require(made == STEPS, f"{label}: {made} new commits, expected {STEPS}")
    status = git(path, "status", "--porcelain", "--untracked-files=all")
    require(not status, f"{label}: work tree not clean:\n{status}")
    subjects = git(path, "log", "--reverse", "--format=%s", f"{since}..HEAD")
    files = git(path, "log", "--reverse", "--format=", "--name-only", f"{since}..HEAD")
    return subjects, files


def fresh_copy(chain: Chain, name: str) -> Path:
    copy = chain.path.with_name(f"{chain.path.name}-{name}")
    remove_tree(copy)
    run(["cp", "-a", chain.path, copy], chain.path.parent)
    return copy


def time_datalad(chain: Chain, rep: int) -> tuple[float, tuple[str, str]]:
    copy = fresh_copy(chain, f"datalad-{rep}")
    seconds = run_timed([DATALAD, "rerun", f"--since={chain.base}", chain.tip], copy).seconds
    work = check_replay(copy, chain.tip, "datalad rerun")
    remove_tree(copy)
    return seconds, work


def time_rerund(chain: Chain, rep: int) -> tuple[float, tuple[str, str]]:
    copy = fresh_copy(chain, f"rerund-{rep}")
    seconds = run_timed([RERUND, "rerun", *RERUND_FLAGS, f"--since={chain.base}"], copy).seconds
    work = check_replay(copy, chain.tip, "rerund rerun")
    remove_tree(copy)
    return seconds, work


def time_commands(chain: Chain) -> Timing:
    """The commands alone: ``sh`` on the script rerund writes for the same selection."""
    script = chain.path.parent / f"chain-{chain.variant}.sh"
    copy = fresh_copy(chain, "script")
    run([RERUND, "rerun", f"--since={chain.base}", "--script", script], copy)
    commands = [
        line
        for line in script.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    require(len(commands) == STEPS, f"the script has {len(commands)} commands, not {STEPS}")
    timing = Timing()
    for _ in range(SCRIPT_RUNS):
        for n in range(1, STEPS + 1):  # outputs removed, as a rerun does (annex: symlinks)
            (copy / f"s{n}.txt").unlink(missing_ok=True)
        timing.samples.append(run_timed(["sh", script], copy).seconds)
    remove_tree(copy)
    return timing


def bench_variant(root: Path, variant: str) -> VariantResult:
    chain = build_chain(root, variant)
    progress(f"{variant}: built BASE {chain.base[:8]} .. TIP {chain.tip[:8]}")
    datalad = Timing()
    rerund = Timing()
    for rep in range(REPETITIONS):
        # Alternate which tool goes first, so neither always meets a warmer cache.
        if rep % 2 == 0:
            dl_s, dl_work = time_datalad(chain, rep)
            rd_s, rd_work = time_rerund(chain, rep)
        else:
            rd_s, rd_work = time_rerund(chain, rep)
            dl_s, dl_work = time_datalad(chain, rep)
        require(
            dl_work == rd_work,
            f"{variant} #{rep + 1}: rerund's commits differ from DataLad's:\n"
            f"datalad:\n{dl_work[0]}\n{dl_work[1]}\nrerund:\n{rd_work[0]}\n{rd_work[1]}",
        )
        datalad.samples.append(dl_s)
        rerund.samples.append(rd_s)
        progress(f"{variant} #{rep + 1}: datalad rerun {fmt_s(dl_s)}, rerund rerun {fmt_s(rd_s)}")
    commands = time_commands(chain)
    progress(f"{variant}: commands alone {fmt_timing(commands)}")
    return VariantResult(variant, datalad, rerund, commands)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="only the text2git dataset")
    parser.add_argument("--keep", action="store_true", help="keep the datasets")
    parser.add_argument("--sandbox", action="store_true", help="rerund rerun --sandbox")
    args = parser.parse_args(argv)
    RERUND_FLAGS[:] = ["--sandbox"] if args.sandbox else []
    variants = ["text2git"] if args.quick else ["text2git", "annex"]

    info = machine_info()
    with scratch_dir("bench-chain", keep=args.keep) as root:
        results = [bench_variant(root, variant) for variant in variants]

    print(
        markdown_table(
            [
                "dataset",
                "datalad rerun --since=BASE TIP",
                "rerund rerun --since=BASE",
                "commands alone (sh script)",
                "DataLad overhead / step",
                "rerund overhead / step",
                "rerund / DataLad overhead",
            ],
            [result.row() for result in results],
        )
    )
    print(
        f"\nMedians of {REPETITIONS} replays in fresh `cp -a` copies (min in parentheses), "
        f"each adding exactly {STEPS} commits with a clean tree after, the same subjects and"
        " files for both tools; commands alone: "
        f"median of {SCRIPT_RUNS} runs. Overhead / step = (total − commands) / {STEPS}. "
        "text2git: `datalad create -c text2git` (files in git); "
        "annex: `datalad create` (every file annexed)."
    )
    out = write_results(
        "bench_chain_sandbox" if args.sandbox else "bench_chain",
        {
            "benchmark": "bench_chain",
            "machine": info,
            "quick": args.quick,
            "results": [result.to_json() for result in results],
        },
    )
    progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
