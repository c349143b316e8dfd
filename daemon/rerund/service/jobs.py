"""Run one job: plan at the pushed tip, rerun the stale steps, publish (SPEC §3, §4).

A job is idempotent: it always starts from the remote's current state, so a
job rerun after a crash finds its own published commits and does nothing more.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace

import structlog

from rerund.core.dsconfig import DatasetConfig
from rerund.core.gitrepo import NULL_SHA, GitRepo
from rerund.core.plan import Plan, PlanOptions, Step, plan_tip
from rerund.core.subdatasets import Locator
from rerund.core.verified import mark_reproduced
from rerund.errors import GitError, RerundError, StepCancelledError, StepSupersededError
from rerund.run.annexbatch import BatchAdd
from rerund.run.execute import ExecOptions, StepContext, StepResult, StepScope
from rerund.run.leastwork import LeastWork
from rerund.run.linearize import Made
from rerund.run.local import Executor
from rerund.run.scheduler import dependencies, is_chain
from rerund.service import guard
from rerund.service.propagate import follow_subdatasets, notify_dependents
from rerund.service.publish import (
    BranchMovedError,
    RemoteRejectedError,
    publish,
    push_side_ref,
)
from rerund.service.sidebyside import Executed, independent_head, run_side_by_side
from rerund.service.sources import served_locator, served_sources, use_sources
from rerund.service.store import Job, JobState, Store
from rerund.service.subpublish import settle, stage
from rerund.service.workspace import Workspace, work_branch
from rerund.settings import RepoSettings, Settings

log = structlog.get_logger("rerund.service.jobs")

MAX_REPLANS = 5


@dataclass
class JobServices:
    settings: Settings
    store: Store
    executor: Executor
    step_slots: asyncio.Semaphore
    cancel: threading.Event
    repo_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    """One runner per work tree in this process, even if a lease is lost meanwhile."""


class JobInterruptedError(RerundError):
    """The service is shutting down; the job goes back to the queue."""


class LeaseLostError(RerundError):
    """The job's lease expired; whoever holds it now owns the job and its work tree."""


class JobCancel(threading.Event):
    """Set for this job (its lease was lost), or for all (the service stops)."""

    def __init__(self, service_wide: threading.Event) -> None:
        super().__init__()
        self._service_wide = service_wide

    def is_set(self) -> bool:
        return super().is_set() or self._service_wide.is_set()


# Infrastructure (storage, the remote, git itself) failing is no verdict on the
# push: the job is retried after a growing delay and the tip stays unhandled.
_INFRASTRUCTURE = (GitError, OSError, sqlite3.Error)
RETRY_BASE_S = 2.0
RETRY_MAX_S = 300.0


def retry_delay_s(attempts: int) -> float:
    """Capped exponential backoff with jitter, by attempts made so far."""
    capped = min(RETRY_MAX_S, RETRY_BASE_S * 2.0 ** max(attempts - 1, 0))
    return capped * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


def compute_plan(
    repo: GitRepo, branch: str, tip: str, settings: RepoSettings, locate: Locator | None = None
) -> tuple[Plan, str | None]:
    """The stale plan of ``tip`` in a clone of ``branch`` (blocking; run it in a thread).

    ``locate`` finds subdatasets' objects (default: those installed in ``repo``).
    """
    options = PlanOptions(implicit_inputs=settings.implicit_inputs, drift=settings.drift)
    return plan_tip(repo, work_branch(branch), tip, options, locate)


class JobRunner:
    def __init__(self, services: JobServices) -> None:
        self.services = services
        self.cancel = JobCancel(services.cancel)
        self._left_alone: tuple[str, ...] = ()

    def lease_lost(self) -> None:
        """Called when renewing the lease failed: stop the step, touch nothing more."""
        self.cancel.set()

    def _check_lease(self) -> None:
        if threading.Event.is_set(self.cancel):
            raise LeaseLostError("the job's lease was lost; another claim owns it now")

    async def run(self, job: Job) -> None:
        """Carry ``job`` to its end and record the outcome (shielded from cancellation)."""
        self.cancel = JobCancel(self.services.cancel)
        self._left_alone = ()
        lock = self.services.repo_locks.setdefault(job.repo, asyncio.Lock())
        async with lock:
            await self._run_claimed(job)

    async def _run_claimed(self, job: Job) -> None:
        structlog.contextvars.bind_contextvars(repo=job.repo, branch=job.branch, job=job.id)
        started = time.monotonic()
        try:
            outcome = await self._run(job)
        except (JobInterruptedError, LeaseLostError) as exc:
            if threading.Event.is_set(self.cancel) or isinstance(exc, LeaseLostError):
                log.warning("job abandoned", reason="lease lost")
                return
            await asyncio.shield(asyncio.to_thread(self.services.store.requeue, job.id))
            log.info("job requeued", reason="shutdown")
            return
        except _INFRASTRUCTURE as exc:
            delay_s = retry_delay_s(job.attempts)
            await asyncio.shield(
                asyncio.to_thread(
                    self.services.store.retry_later,
                    job,
                    now=time.time(),
                    delay_s=delay_s,
                    error=f"will retry: {exc}",
                )
            )
            log.warning("job will be retried", error=str(exc), retry_in_s=round(delay_s, 1))
            return
        except StepSupersededError as exc:
            outcome = _Outcome("superseded", handled=job.target, error=str(exc))
        except RerundError as exc:
            outcome = _Outcome("failed", handled=job.target, error=str(exc))
        except Exception as exc:  # a bug must fail this job, not the whole service
            log.exception("job crashed")
            outcome = _Outcome("failed", handled=job.target, error=f"internal error: {exc!r}")
        if self._left_alone:  # pinned gitlinks are reported with the job's outcome
            outcome = replace(
                outcome, error="; ".join(filter(None, (outcome.error, *self._left_alone)))
            )
        await asyncio.shield(asyncio.to_thread(self._finish, job, outcome))
        if outcome.state == "succeeded" and (outcome.published or job.cause is None):
            await asyncio.shield(self._propagate(job, outcome.handled))
        log.info(
            "job finished",
            outcome=outcome.state,
            error=outcome.error,
            published=outcome.published,
            duration_s=round(time.monotonic() - started, 3),
        )
        structlog.contextvars.unbind_contextvars("repo", "branch", "job")

    async def _propagate(self, job: Job, tip: str) -> None:
        """Queue jobs for the served datasets that have this one as a subdataset."""
        try:
            queued = await asyncio.to_thread(
                notify_dependents,
                self.services.settings,
                self.services.store,
                job,
                tip,
                time.time(),
            )
        except _INFRASTRUCTURE as exc:  # the users' own pushes and scans still reach them
            log.warning("could not reach the datasets using this one", error=str(exc))
            return
        if queued:
            log.info("propagated to superdatasets", repos=queued, tip=tip)

    def _finish(self, job: Job, outcome: _Outcome) -> None:
        recorded = self.services.store.finish(
            job,
            outcome.state,
            now=time.time(),
            handled=outcome.handled,
            error=outcome.error,
            published=outcome.published,
            side_ref=outcome.side_ref,
        )
        if not recorded:
            log.warning("outcome not recorded: the job's lease was lost meanwhile")

    async def _run(self, job: Job) -> _Outcome:  # noqa: PLR0911 - one return per ending
        repo_settings = self.services.settings.repo(job.repo)
        if repo_settings is None:
            return _Outcome("failed", job.target, error=f"repository {job.repo} is not configured")
        workspace = Workspace(self.services.settings.state_dir, repo_settings)
        target = job.target
        sources = await asyncio.to_thread(served_sources, self.services.settings)
        for _ in range(MAX_REPLANS):
            self._check_lease()
            repo, target = await asyncio.to_thread(workspace.prepare, target)
            await asyncio.to_thread(use_sources, repo, sources)
            start = target  # a propagated job starts with the moved gitlinks' commit
            if job.cause is not None and repo_settings.follow_subdatasets:
                moved = await asyncio.to_thread(
                    follow_subdatasets, repo, target, self.services.settings, job.repo
                )
                start, self._left_alone = moved.head, moved.left_alone
                log.info("followed subdatasets", moved=moved.moved, left_alone=moved.left_alone)
            locate = served_locator(repo, start, sources)
            plan, dsid = await asyncio.to_thread(
                compute_plan, repo, job.branch, start, repo_settings, locate
            )
            await asyncio.to_thread(
                self.services.store.set_steps, job.id, [step.to_json() for step in plan.steps]
            )
            log.info(
                "planned",
                target=target,
                steps=len(plan.steps),
                notices=len(plan.notices),
                undecided=[f"{u.commit[:8]} {u.describe()}" for u in plan.undecided],
            )
            if not plan.steps and start == target:
                return _Outcome("succeeded", target)
            refusal, keep = await asyncio.to_thread(
                guard.gate, self.services.store, repo, repo_settings, job, plan, target=target
            )
            if refusal is not None:  # SPEC §7: nothing runs, nothing is published
                await asyncio.to_thread(self._not_run, job, len(plan.steps))
                log.warning("refused", rule=refusal.rule, reason=refusal.reason)
                return _Outcome("refused", keep or NULL_SHA, error=refusal.reason)
            config = await asyncio.to_thread(DatasetConfig.read, repo)
            least = await asyncio.to_thread(
                LeastWork.open,
                repo,
                config,
                work_branch(job.branch),
                reuse=repo_settings.reuse,
            )
            annex_add = BatchAdd(repo)
            try:
                context = StepContext(dsid, config, annex_add)
                executed = await self._execute(job, repo, plan, context, start, least)
            finally:
                await asyncio.to_thread(annex_add.close)
                await asyncio.to_thread(least.close)
            self._check_lease()
            head, failure = executed.head, executed.failure
            if failure is not None:
                published = await self._publish_independent(
                    job, repo, repo_settings, target, executed, annex=config.is_annex
                )
                outcome = await self._keep_failure(
                    job, workspace, repo, base=target, head=head, error=failure
                )
                return replace(outcome, handled=published or target, published=published)
            if head != target:
                await asyncio.to_thread(
                    self.services.store.note_publishing, job.repo, job.branch, head
                )
            try:
                # Served subdatasets' new commits wait on side refs until this push succeeded.
                staged = await asyncio.to_thread(
                    stage, repo, target, head, self.services.settings, job.id
                )
                tip = await asyncio.to_thread(
                    publish, repo, job.branch, target, head, annex=config.is_annex
                )
            except BranchMovedError:
                log.info("branch moved; planning again on its new tip")
                continue
            except RemoteRejectedError as exc:
                return await self._keep_failure(
                    job, workspace, repo, base=target, head=head, error=str(exc)
                )
            for item in staged:  # rerund's own push there: heard of, never a job
                await asyncio.to_thread(
                    self.services.store.note_publishing,
                    item.served.repo.name,
                    item.served.repo.branch,
                    item.commit,
                )
            self._left_alone += tuple(await asyncio.to_thread(settle, staged))
            published = tip if tip != target else None
            return _Outcome("succeeded", tip, published=published)
        return _Outcome("failed", target, error=f"{job.branch} kept moving; gave up re-planning")

    async def _keep_failure(
        self, job: Job, workspace: Workspace, repo: GitRepo, *, base: str, head: str, error: str
    ) -> _Outcome:
        """Finished commits go to ``refs/rerund/failed/<job>``, the tree to ``failed/``."""
        annex = (await asyncio.to_thread(DatasetConfig.read, repo)).is_annex
        try:
            ref = await asyncio.to_thread(
                push_side_ref, repo, f"refs/rerund/failed/{job.id}", base, head, annex=annex
            )
        except RerundError as exc:  # the remote refuses side refs too: the tree still has them
            log.warning("could not keep the commits on a side ref", error=str(exc))
            ref = None
        kept = await asyncio.to_thread(workspace.quarantine, job.id)
        log.warning("plan failed", error=error, side_ref=ref, work_tree=str(kept))
        if ref is not None:  # what did get committed is not lost: say where it is
            error = f"{error}; the commits of the steps before it are on {ref}"
        return _Outcome("failed", base, error=error, side_ref=ref)

    async def _publish_independent(
        self,
        job: Job,
        repo: GitRepo,
        settings: RepoSettings,
        target: str,
        executed: Executed,
        *,
        annex: bool,
    ) -> str | None:
        """Publish the steps no failed step feeds or follows, if the repository wants that."""
        independent = executed.independent_head
        if settings.on_failure != "publish-independent" or independent in (None, target):
            return None
        await asyncio.to_thread(
            self.services.store.note_publishing, job.repo, job.branch, independent
        )
        try:
            tip = await asyncio.to_thread(
                publish, repo, job.branch, target, independent, annex=annex
            )
        except (BranchMovedError, RemoteRejectedError) as exc:  # all stay on the side ref
            log.warning("could not publish the independent steps", error=str(exc))
            return None
        log.info("published the steps independent of the failure", published=tip)
        return tip

    async def _execute(  # noqa: PLR0917 - the plan and where it runs
        self,
        job: Job,
        repo: GitRepo,
        plan: Plan,
        context: StepContext,
        head: str,
        least: LeastWork,
    ) -> Executed:
        """Run the steps: side by side where independent, else in order (first failure stops).

        Returns the head after the finished steps, and the failure's message.
        """
        store = self.services.store
        settings = self.services.settings
        options = ExecOptions(
            log_dir=self.services.settings.state_dir / "logs" / f"job-{job.id}",
            timeout_s=self.services.settings.step_timeout_s,
            cancel=self.cancel,
            max_log_bytes=self.services.settings.max_log_bytes,
        )
        repo_settings = settings.repo(job.repo)
        if repo_settings is not None:
            options = guard.confine(options, settings, repo_settings)
        slots = min(
            repo_settings.max_parallel_steps if repo_settings else 1,
            settings.max_concurrent_steps,
        )
        if slots > 1 and len(plan.steps) > 1:
            deps = await asyncio.to_thread(dependencies, repo, plan.steps)
            if not is_chain(deps):
                executed = await run_side_by_side(
                    job_id=job.id, repo=repo, plan=plan, context=context, options=options,
                    base=head, slots=slots, executor=self.services.executor,
                    step_slots=self.services.step_slots, store=store, least=least,
                )  # fmt: skip
                if executed.interrupted:
                    raise JobInterruptedError(executed.failure or "interrupted")
                if executed.head != head:  # the work tree follows, as after steps in place
                    await asyncio.to_thread(
                        repo.run, "merge", "--ff-only", "--quiet", executed.head
                    )
                return executed
        made: dict[int, Made] = {}
        base = head
        for position, step in enumerate(plan.steps):
            self._check_lease()
            structlog.contextvars.bind_contextvars(step=step.commit[:12])
            await asyncio.to_thread(
                store.update_step, job.id, position, state="running", started_at=time.time()
            )
            async with self.services.step_slots:
                scope = StepScope(
                    job.repo, job.branch, job.id, position, lambda: self._superseded(job)
                )
                try:
                    result = await self._run_step(
                        repo, step, head, context, replace(options, scope=scope), least
                    )
                except StepSupersededError as exc:
                    await asyncio.to_thread(self._step_failed, job, position, plan, exc, options)
                    raise
                except StepCancelledError as exc:
                    raise JobInterruptedError(str(exc)) from exc
                except RerundError as exc:
                    await asyncio.to_thread(self._step_failed, job, position, plan, exc, options)
                    log.warning("step finished", outcome="failed", error=str(exc))
                    independent = await asyncio.to_thread(
                        independent_head, repo, base, plan.steps, made, {position}
                    )
                    return Executed(head, str(exc), independent_head=independent)
            if result.new_commit is not None:
                made[position] = Made(head, result.new_commit)
            if result.outcome in ("identical", "cut-off"):
                try:
                    await asyncio.to_thread(mark_reproduced, repo, step.commit, head)
                except GitError as exc:  # only a shortcut for later plans is lost
                    log.warning("could not note the reproduction", error=str(exc))
            head = result.head
            await asyncio.to_thread(
                store.update_step,
                job.id,
                position,
                state=result.outcome,
                new_commit=result.new_commit,
                finished_at=time.time(),
                log_path=str(result.log_path),
            )
            log.info(
                "step finished", outcome=result.outcome, duration_s=round(result.duration_s, 3)
            )
        structlog.contextvars.unbind_contextvars("step")
        return Executed(head)

    async def _run_step(  # noqa: PLR0917 - execute_step's arguments plus least
        self,
        repo: GitRepo,
        step: Step,
        head: str,
        context: StepContext,
        options: ExecOptions,
        least: LeastWork,
    ) -> StepResult:
        """The step cut off or reused when it can be, else run by the executor."""
        try:
            result = await asyncio.to_thread(least.shortcut, repo, step, head, context, options)
        except (GitError, OSError) as exc:  # a shortcut lost, not a failure: run the step
            log.warning("could not check for a shortcut", error=str(exc))
            result = None
        if result is None:
            result = await self.services.executor.run_step(repo, step, head, context, options)
        try:
            await asyncio.to_thread(least.note_commit, step, result.new_commit)
        except (GitError, OSError) as exc:
            log.warning("could not file the step for reuse", error=str(exc))
        return result

    def _not_run(self, job: Job, count: int) -> None:
        for position in range(count):
            self.services.store.update_step(job.id, position, state="not-run")

    def _superseded(self, job: Job) -> bool:
        """A newer push for the branch is queued behind this job (asked from a step's thread)."""
        queued = self.services.store.jobs(repo=job.repo, state="queued")
        return any(other.branch == job.branch and other.id != job.id for other in queued)

    def _step_failed(
        self, job: Job, position: int, plan: Plan, exc: RerundError, options: ExecOptions
    ) -> None:
        store = self.services.store
        log_path = options.log_dir / f"{plan.steps[position].commit[:12]}.log"
        store.update_step(
            job.id,
            position,
            state="failed",
            finished_at=time.time(),
            error=str(exc),
            log_path=str(log_path) if log_path.exists() else None,
        )
        for later in range(position + 1, len(plan.steps)):
            store.update_step(job.id, later, state="not-run")


@dataclass(frozen=True)
class _Outcome:
    state: JobState
    handled: str
    error: str | None = None
    published: str | None = None
    side_ref: str | None = None
