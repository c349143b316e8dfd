"""Is a result reproducible? Rerun records where they ran, compare, report (SPEC §8).

For each record: a scratch clone checked out at the record's first parent
(the state it ran in), the step run there by :func:`execute_step` exactly as a
rerun would, and the resulting tree compared with the record's commit. The
user's repository gains nothing but borrowed reads. Records are independent
of each other — each runs on its own parent — so any number run at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rerund.core.dsconfig import DatasetConfig
from rerund.core.gitrepo import GitRepo
from rerund.core.globbing import expand_specs
from rerund.core.graph import current_seqs
from rerund.core.history import HistoryIndex
from rerund.core.placeholders import command_text, format_io_specs
from rerund.core.plan import Step
from rerund.core.staleness import StalenessTracker
from rerund.errors import GitError, InputError, RerundError, StepCancelledError, StepFailedError
from rerund.run.compare import OutputDiff, compare_trees
from rerund.run.execute import ExecOptions, StepContext, execute_step
from rerund.run.scratch import ScratchClones, remove_tree

State = Literal["identical", "differs", "failed", "cannot-run"]
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class Verdict:
    """What verifying one record found."""

    commit: str
    summary: str
    cmd: str
    state: State
    duration_s: float
    differences: tuple[OutputDiff, ...] = ()
    exit_code: int | None = None
    log_tail: str | None = None
    missing: tuple[str, ...] = ()
    """Inputs whose content could not be obtained (``cannot-run``)."""
    message: str | None = None

    def describe(self) -> str:
        """The detail after the state in one line of human output."""
        if self.state == "differs":
            return "differs: " + ", ".join(d.path for d in self.differences)
        if self.state == "failed":
            return f"failed: {self.message}"
        if self.state == "cannot-run":
            what = ", ".join(self.missing) if self.missing else self.message
            return f"cannot run: {what}"
        return "identical"

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "summary": self.summary,
            "cmd": self.cmd,
            "state": self.state,
            "duration_s": round(self.duration_s, 3),
            "differences": [d.to_json() for d in self.differences],
            "exit_code": self.exit_code,
            "log_tail": self.log_tail,
            "missing": list(self.missing),
            "message": self.message,
        }


@dataclass(frozen=True)
class VerifyOptions:
    jobs: int = 1
    timeout_s: float | None = None
    log_dir: Path | None = None
    """Where step logs are kept; by default they go with the scratch clone."""
    content_remote: str | None = None
    """Where scratch clones get annexed content (default: the repository verified)."""
    cancel: threading.Event | None = None
    """Set to stop the running commands (a shutting-down service)."""


@dataclass
class VerifyReport:
    head: str
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def reproducible(self) -> int:
        return sum(1 for v in self.verdicts if v.state == "identical")

    @property
    def ok(self) -> bool:
        return self.reproducible == len(self.verdicts)

    def summary(self) -> str:
        return f"{self.reproducible}/{len(self.verdicts)} reproducible"

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "reproducible": self.reproducible,
            "total": len(self.verdicts),
            "records": [v.to_json() for v in self.verdicts],
        }


def current_steps(repo: GitRepo, branch: str, head: str) -> list[Step]:
    """The current records at ``head``: newest producer of an output still in the tree."""
    index = HistoryIndex.open(repo, branch)
    try:
        tracker = StalenessTracker(index)
        tracker.update(head)
        records = index.records_at(current_seqs(tracker))
        return [
            Step(rec.commit, rec.summary, rec.record, ())
            for seq in sorted(records)
            if (rec := records[seq]).record is not None
        ]
    finally:
        index.close()


def verify(
    repo: GitRepo,
    head: str,
    steps: Sequence[Step],
    dsid: str | None,
    *,
    options: VerifyOptions,
    on_verdict: Callable[[Verdict], None] | None = None,
) -> VerifyReport:
    """Verify ``steps`` (up to ``options.jobs`` at once); verdicts keep the steps' order."""
    config = DatasetConfig.read(repo)
    report = VerifyReport(head)
    clones = ScratchClones(repo, annex=config.is_annex, origin=options.content_remote)

    def one(step: Step) -> Verdict:
        verdict = verify_step(repo, step, StepContext(dsid, config), options, clones)
        if on_verdict is not None:
            on_verdict(verdict)
        return verdict

    with clones, ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        report.verdicts = list(pool.map(one, steps))
    return report


def verify_step(
    repo: GitRepo,
    step: Step,
    context: StepContext,
    options: VerifyOptions,
    clones: ScratchClones,
) -> Verdict:
    """Rerun ``step`` on its commit's first parent in a scratch clone and compare."""
    started = time.monotonic()
    cmd = command_text(step.record.cmd)

    def verdict(state: State, **details: Any) -> Verdict:
        return Verdict(step.commit, step.summary, cmd, state, time.monotonic() - started, **details)

    parent = repo.resolve(f"{step.commit}^1")
    if parent is None:
        return verdict("cannot-run", message="a root commit: there is no state it ran in")
    try:
        scratch = clones.checkout(parent)
    except GitError as exc:
        return verdict("cannot-run", message=f"could not check out {parent[:8]}: {exc}")
    log_dir = options.log_dir or scratch.path.parent / "logs"
    exec_options = ExecOptions(log_dir=log_dir, timeout_s=options.timeout_s, cancel=options.cancel)
    try:
        result = execute_step(scratch, step, parent, context, exec_options)
    except StepCancelledError:
        raise
    except StepFailedError as exc:
        return verdict(
            "failed", exit_code=exc.exit_code, log_tail=_tail(exc.log_path), message=str(exc)
        )
    except InputError as exc:
        missing = _absent_inputs(scratch, step, context.config)
        return verdict("cannot-run", missing=tuple(missing), message=str(exc))
    except RerundError as exc:
        return verdict("cannot-run", message=str(exc))
    finally:
        if options.log_dir is None:
            remove_tree(log_dir)
    differences = compare_trees(
        scratch,
        step.commit,
        result.head,
        ignore_prefix=context.config.record_dir,
        recorded_annex=repo,
    )
    return (
        verdict("differs", differences=tuple(differences)) if differences else verdict("identical")
    )


def _tail(log_path: str | None) -> str | None:
    if log_path is None or not Path(log_path).is_file():
        return None
    lines = Path(log_path).read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _absent_inputs(scratch: GitRepo, step: Step, config: DatasetConfig) -> list[str]:
    """Declared inputs, in ``scratch``, whose annexed content could not be had."""
    record = step.record
    exec_dir = scratch.path / record.pwd
    specs = format_io_specs([*record.inputs, *record.extra_inputs], dict(config.substitutions))
    paths = [str(exec_dir / path) for path in expand_specs(specs, exec_dir).fetch_paths]
    if not paths or not config.is_annex:
        return []
    out = scratch.annex("find", "--not", "--in=here", "--format=${file}\\n", "--", *paths)
    return out.decode("utf-8", "replace").splitlines()
