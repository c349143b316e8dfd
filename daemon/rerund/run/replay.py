"""Run a whole plan, step after step, in one work tree (the one-shot ``rerund rerun``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Plan, Step
from rerund.core.verified import mark_reproduced
from rerund.errors import DirtyTreeError, GitError, RerundError
from rerund.run.annexbatch import BatchAdd
from rerund.run.execute import ExecOptions, StepContext, StepResult, execute_step


@dataclass
class ReplayReport:
    """What happened to each step of a plan."""

    results: list[StepResult] = field(default_factory=list)
    failure: RerundError | None = None
    failed_step: Step | None = None
    not_run: list[Step] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

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
    on_step: Callable[[StepResult], None] | None = None,
) -> ReplayReport:
    """Execute ``plan`` on the current HEAD; stop at the first failing step.

    The failing step's partial work stays in the tree for inspection, as with
    ``datalad rerun``; nothing after it runs.
    """
    require_clean(repo)
    report = ReplayReport()
    head = repo.text("rev-parse", "HEAD")
    with BatchAdd(repo) as annex_add:
        context = replace(context, annex_add=annex_add)
        for position, step in enumerate(plan.steps):
            try:
                result = execute_step(repo, step, head, context, options)
            except RerundError as exc:
                report.failure = exc
                report.failed_step = step
                report.not_run = list(plan.steps[position + 1 :])
                return report
            if result.outcome == "identical":
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
