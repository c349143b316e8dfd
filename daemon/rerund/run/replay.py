"""Run a whole plan, step after step, in one work tree (the one-shot ``rerund rerun``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Plan, Step
from rerund.core.verified import mark_reproduced
from rerund.errors import DirtyTreeError, GitError, RerundError, StepCancelledError
from rerund.run.annexbatch import BatchAdd
from rerund.run.execute import ExecOptions, StepContext, StepResult, execute_step
from rerund.run.leastwork import LeastWork
from rerund.run.restore import partial_dir, restore_tree
from rerund.run.scheduler import Scheduler, is_chain


@dataclass
class ReplayReport:
    """What happened to each step of a plan."""

    results: list[StepResult] = field(default_factory=list)
    failure: RerundError | None = None
    failed_step: Step | None = None
    not_run: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    kept: Path | None = None
    """Where the failed step's partial outputs were moved before the tree was reset."""
    interrupted: bool = False
    """rerund was asked to stop (a signal); ``failed_step`` is the one it stopped, if any."""

    @property
    def ok(self) -> bool:
        return self.failure is None


def require_clean(repo: GitRepo) -> None:
    """A rerun attributes every change to its command, so the tree must start clean."""
    dirt = repo.status_porcelain()
    if dirt:
        first = dirt.splitlines()[0].strip()
        raise DirtyTreeError(
            f"{repo.path} has uncommitted changes ({first}"
            f"{' and more' if len(dirt.splitlines()) > 1 else ''}); commit or stash them first"
        )


def replay(
    repo: GitRepo,
    plan: Plan,
    context: StepContext,
    options: ExecOptions,
    *,
    on_step: Callable[[StepResult], None] | None = None,
    on_start: Callable[[int, Step], None] | None = None,
    least: LeastWork | None = None,
    slots: int = 1,
) -> ReplayReport:
    """Execute ``plan`` on the current HEAD; stop at the first failing step.

    The failing (or interrupted) step's changes are moved next to its log and
    the tree is reset to the last commit, so a later rerun starts clean;
    nothing after it runs. ``options.cancel`` stops the running step and the
    rest of the plan. ``on_start`` hears of each step (its 0-based position)
    before it runs. ``least`` cuts off or reuses what needs no run. With
    ``slots`` > 1, independent steps run side by side (:mod:`rerund.run.scheduler`);
    a failing step then stops only its dependants.
    """
    require_clean(repo)
    report = ReplayReport()
    head = repo.text("rev-parse", "HEAD")
    if slots > 1 and len(plan.steps) > 1:
        scheduler = Scheduler(repo, plan, context, options, slots=slots, base=head, least=least)
        if not is_chain(scheduler.deps):
            return _replay_side_by_side(repo, scheduler, least, on_step)
    with BatchAdd(repo) as annex_add:
        context = replace(context, annex_add=annex_add)
        for position, step in enumerate(plan.steps):
            if options.cancel is not None and options.cancel.is_set():
                report.interrupted = True
                report.not_run = list(plan.steps[position:])
                return report
            if on_start is not None:
                on_start(position, step)
            try:
                result = least_step(least, repo, step, head, context, options, report.warnings)
            except RerundError as exc:
                report.failure = exc
                report.failed_step = step
                # A git call killed by the terminal's Ctrl-C fails as a GitError: an interrupt.
                report.interrupted = isinstance(exc, StepCancelledError) or (
                    options.cancel is not None and options.cancel.is_set()
                )
                report.not_run = list(plan.steps[position + 1 :])
                _put_back(repo, step, options, report)
                return report
            if result.outcome in ("identical", "cut-off"):
                try:
                    mark_reproduced(repo, step.commit, head)
                except GitError as exc:  # only a shortcut for later plans is lost
                    report.warnings.append(
                        f"could not note {step.commit[:8]}'s reproduction: {exc}"
                    )
            head = result.head
            report.results.append(result)
            report.warnings.extend(f"{step.commit[:8]}: {text}" for text in result.warnings)
            if on_step is not None:
                on_step(result)
    return report


def _replay_side_by_side(
    repo: GitRepo,
    scheduler: Scheduler,
    least: LeastWork | None,
    on_step: Callable[[StepResult], None] | None,
) -> ReplayReport:
    """Run with the scheduler, then commit every finished step, in plan order, on HEAD."""
    report = ReplayReport()
    outcome = scheduler.run()
    commits = scheduler.finish(outcome)
    if commits:
        repo.run("merge", "--ff-only", "--quiet", commits[-1])
    steps = scheduler.plan.steps
    for position, result in sorted(outcome.results.items()):
        step = steps[position]
        try:
            if result.outcome in ("identical", "cut-off"):
                mark_reproduced(repo, step.commit, result.head)
            if least is not None:
                least.note_commit(step, result.new_commit)
        except GitError as exc:  # only a shortcut for later plans is lost
            report.warnings.append(f"could not note {step.commit[:8]}'s result: {exc}")
        report.results.append(result)
        report.warnings.extend(f"{step.commit[:8]}: {text}" for text in result.warnings)
        if on_step is not None:
            on_step(result)
    for position, error in sorted(outcome.failures.items()):
        if report.failure is None:
            report.failure, report.failed_step = error, steps[position]
            report.kept = outcome.kept.get(position)
        else:
            report.warnings.append(f"{steps[position].commit[:8]} failed too: {error}")
    report.not_run = [steps[position] for position in sorted(outcome.not_run)]
    report.interrupted = outcome.interrupted
    return report


def least_step(  # noqa: PLR0917 - execute_step's arguments plus two
    least: LeastWork | None,
    repo: GitRepo,
    step: Step,
    head: str,
    context: StepContext,
    options: ExecOptions,
    warnings: list[str],
) -> StepResult:
    """The step cut off or reused if it can be, else run; a new commit is filed for reuse."""
    if least is None:
        return execute_step(repo, step, head, context, options)
    try:
        result = least.shortcut(repo, step, head, context, options)
    except (GitError, OSError) as exc:  # a shortcut lost, not a failure: run the step
        warnings.append(f"{step.commit[:8]}: could not check for a shortcut: {exc}")
        result = None
    if result is None:
        result = execute_step(repo, step, head, context, options)
    try:
        least.note_commit(step, result.new_commit)
    except (GitError, OSError) as exc:
        warnings.append(f"{step.commit[:8]}: could not file it for reuse: {exc}")
    return result


def _put_back(repo: GitRepo, step: Step, options: ExecOptions, report: ReplayReport) -> None:
    """Keep the failed step's changes next to its log and reset the tree to HEAD."""
    keep_in = partial_dir(options.log_dir / f"{step.commit[:12]}.log")
    try:
        kept = restore_tree(repo, keep_in)
    except (GitError, OSError) as exc:
        report.warnings.append(f"could not put the work tree back to HEAD: {exc}")
        return
    if kept:
        report.kept = keep_in
