"""The daemon's side of running independent steps at once (issue 10).

The :class:`~rerund.run.scheduler.Scheduler` works in threads; here its hooks
are tied to the event loop: each step waits for one of the service's global
step slots (``max_concurrent_steps``) and runs through the configured
executor backend, and the job's steps in the store follow along.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Plan, Step
from rerund.core.verified import mark_reproduced
from rerund.errors import GitError, RerundError, StepCancelledError
from rerund.run.execute import ExecOptions, StepContext, StepResult
from rerund.run.leastwork import LeastWork
from rerund.run.linearize import Made, linearize
from rerund.run.local import Executor
from rerund.run.scheduler import Outcome, Scheduler, dependencies, related
from rerund.service.store import Store


@dataclass(frozen=True)
class Executed:
    """Where a plan's execution left the branch."""

    head: str
    """Every finished step, laid on the base in plan order."""
    failure: str | None = None
    independent_head: str | None = None
    """On failure: only the finished steps unrelated to a failed one (for publishing)."""
    interrupted: bool = False


def independent_head(
    repo: GitRepo, base: str, steps: tuple[Step, ...], made: dict[int, Made], failed: set[int]
) -> str:
    """``base`` with the finished steps that neither feed nor follow a failed step."""
    deps = dependencies(repo, steps)
    tied = related(deps, failed)
    chosen = [made[position] for position in sorted(made) if position not in tied]
    commits = linearize(repo, base, chosen) if chosen else []
    return commits[-1] if commits else base


async def run_side_by_side(
    *,
    job_id: int,
    repo: GitRepo,
    plan: Plan,
    context: StepContext,
    options: ExecOptions,
    base: str,
    slots: int,
    executor: Executor,
    step_slots: asyncio.Semaphore,
    store: Store,
    least: LeastWork | None,
) -> Executed:
    loop = asyncio.get_running_loop()

    def run_step(
        work: GitRepo, step: Step, head: str, ctx: StepContext, opts: ExecOptions
    ) -> StepResult:
        call = executor.run_step(work, step, head, ctx, opts)
        return asyncio.run_coroutine_threadsafe(call, loop).result()

    @contextmanager
    def slot() -> Iterator[None]:
        asyncio.run_coroutine_threadsafe(step_slots.acquire(), loop).result()
        try:
            yield
        finally:
            loop.call_soon_threadsafe(step_slots.release)

    def started(position: int, _: Step) -> None:
        store.update_step(job_id, position, state="running", started_at=time.time())

    def failed(position: int, exc: RerundError) -> None:
        log_path = options.log_dir / f"{plan.steps[position].commit[:12]}.log"
        store.update_step(
            job_id,
            position,
            state="failed",
            finished_at=time.time(),
            error=str(exc),
            log_path=str(log_path) if log_path.exists() else None,
        )

    # Building it reads every step's commit: off the loop, like all git work.
    scheduler = await asyncio.to_thread(
        functools.partial(
            Scheduler, repo, plan, context, options, slots=slots, base=base, run_step=run_step,
            least=least, slot=slot, on_start=started, on_failure=failed,
        )
    )  # fmt: skip
    outcome = await asyncio.to_thread(scheduler.run)
    return await asyncio.to_thread(_finish, scheduler, outcome, store, job_id, least)


def _finish(
    scheduler: Scheduler, outcome: Outcome, store: Store, job_id: int, least: LeastWork | None
) -> Executed:
    repo, steps = scheduler.repo, scheduler.plan.steps
    made = dict(outcome.made)
    commits = scheduler.finish(outcome)
    head = commits[-1] if commits else scheduler.base
    for position, result in sorted(outcome.results.items()):
        step = steps[position]
        try:
            if result.outcome in ("identical", "cut-off"):
                mark_reproduced(repo, step.commit, result.head)
            if least is not None:
                least.note_commit(step, result.new_commit)
        except GitError:  # only a shortcut for later plans is lost
            pass
        store.update_step(
            job_id,
            position,
            state=result.outcome,
            new_commit=result.new_commit,
            finished_at=time.time(),
            log_path=str(result.log_path),
        )
    for position in outcome.not_run:
        store.update_step(job_id, position, state="not-run")
    if outcome.interrupted:
        return Executed(head, "interrupted", interrupted=True)
    if not outcome.failures:
        return Executed(head)
    first = min(outcome.failures)
    error = outcome.failures[first]
    if isinstance(error, StepCancelledError):
        return Executed(head, str(error), interrupted=True)
    independent = independent_head(repo, scheduler.base, steps, made, set(outcome.failures))
    return Executed(head, str(error), independent_head=independent)
