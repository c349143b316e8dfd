"""The daemon's life: start-up, main loop, shutdown (SPEC §5, §6).

Signal handlers only set flags. Shutdown stops intake first (HTTP, watchers),
lets running jobs finish within ``shutdown_timeout_s`` (below systemd's
``TimeoutStopSec``), then stops what is left — its jobs go back to the queue —
and closes the store. Every task is registered, reaped, and its exceptions logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from rerund import settings as settings_module
from rerund.core.gitrepo import NULL_SHA, GitRepo
from rerund.core.plan import Plan
from rerund.errors import GitError, RerundError
from rerund.run.local import LocalExecutor
from rerund.service.guard import startup_checks
from rerund.service.jobs import JobRunner, JobServices, compute_plan
from rerund.service.metrics import Metrics
from rerund.service.notify import sd_notify, watchdog_interval_s
from rerund.service.store import EventResult, Notification, Store
from rerund.service.workspace import read_remote_tip
from rerund.settings import RepoSettings, Settings
from rerund.triggers import spool
from rerund.triggers.watcher import DirectoryWatcher

log = structlog.get_logger("rerund.service.lifecycle")

EXIT_STARTUP_FAILED = 3
_IDLE_POLL_S = 1.0


AppFactory = Callable[["Service"], web.Application]


class Service:
    """The daemon. ``make_app`` builds its HTTP side; the service never imports it."""

    def __init__(self, settings: Settings, make_app: AppFactory) -> None:
        self.settings = settings
        self._make_app = make_app
        self.metrics = Metrics()
        self.store: Store | None = None
        self._should_exit = asyncio.Event()
        self._reload = asyncio.Event()
        self._work_available = asyncio.Event()
        self._intake_wanted = asyncio.Event()
        self._dirty_repos: set[str] = set()
        self._pending_events: list[tuple[Notification, asyncio.Future[EventResult]]] = []
        self._events_waiting = asyncio.Event()
        self._spool_dirty = True
        self._draining = False
        self._cancel_steps = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._watcher: DirectoryWatcher | None = None
        self._services: JobServices | None = None
        self.started_at = time.time()

    @property
    def db(self) -> Store:
        """The store, once started."""
        if self.store is None:
            raise RerundError("the service has not started")
        return self.store

    # -- life -------------------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.serve())

    async def serve(self) -> int:
        self._install_signal_handlers()
        try:
            await self.startup()
        except (RerundError, OSError) as exc:
            log.error("start-up failed", error=str(exc))
            await self._close()
            return EXIT_STARTUP_FAILED
        await self.main_loop()
        await self.shutdown()
        return 0

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._should_exit.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)

    async def startup(self) -> None:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(startup_checks, settings)
        self.store = await asyncio.to_thread(Store, settings.state_dir / "rerund.sqlite")
        requeued = await asyncio.to_thread(
            self.store.recover, max_attempts=settings.job_max_attempts
        )
        spool.prepare_spool(settings.spool_dir)
        self._spawn(self._event_writer(), "event-writer")
        self._runner = web.AppRunner(self._make_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, settings.listen_host, settings.listen_port, reuse_address=True
        )
        await site.start()
        self._start_watching()
        self._dirty_repos = {repo.name for repo in settings.all_repos()}
        self._intake_wanted.set()
        self._spawn(self._intake_loop(), "intake")
        services = self._services = JobServices(
            settings=settings,
            store=self.store,
            executor=LocalExecutor(),
            step_slots=asyncio.Semaphore(settings.max_concurrent_steps),
            cancel=self._cancel_steps,
        )
        for number in range(settings.max_concurrent_steps):
            self._workers.add(
                self._spawn(self._worker_loop(JobRunner(services)), f"worker-{number}")
            )
        interval = watchdog_interval_s()
        if interval is not None:
            self._spawn(self._watchdog_loop(interval), "watchdog")
        sd_notify("READY=1")
        log.info(
            "started",
            listen=f"{settings.listen_host}:{settings.listen_port}",
            repos=len(settings.all_repos()),
            requeued_jobs=requeued,
            state_dir=str(settings.state_dir),
        )

    async def main_loop(self) -> None:
        while not self._should_exit.is_set():
            exit_wait = asyncio.ensure_future(self._should_exit.wait())
            reload_wait = asyncio.ensure_future(self._reload.wait())
            await asyncio.wait({exit_wait, reload_wait}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (exit_wait, reload_wait):
                waiter.cancel()
            if self._reload.is_set() and not self._should_exit.is_set():
                self._reload.clear()
                await self._reload_settings()

    async def shutdown(self) -> None:
        sd_notify("STOPPING=1")
        log.info("stopping", timeout_s=self.settings.shutdown_timeout_s)
        if self._runner is not None:
            await self._runner.cleanup()  # no new webhooks or API calls
            self._runner = None
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
        self._draining = True
        self._work_available.set()
        if self._workers:
            _, late = await asyncio.wait(self._workers, timeout=self.settings.shutdown_timeout_s)
            if late:  # stop running commands; their jobs are requeued, not failed
                self._cancel_steps.set()
                await asyncio.wait(late, timeout=10)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close()
        log.info("stopped")

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self.store is not None:
            self.store.close()
            self.store = None

    async def _reload_settings(self) -> None:
        try:
            fresh = await asyncio.to_thread(settings_module.load, self.settings.source)
        except RerundError as exc:
            log.error("reload refused; keeping the running configuration", error=str(exc))
            return
        # Where state lives and where we listen cannot change without a restart.
        self.settings = replace(
            fresh,
            state_dir=self.settings.state_dir,
            listen_host=self.settings.listen_host,
            listen_port=self.settings.listen_port,
        )
        if self._services is not None:
            self._services.settings = self.settings
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.stop)
        self._start_watching()
        self._dirty_repos.update(repo.name for repo in self.settings.all_repos())
        self._intake_wanted.set()
        log.info("reloaded", repos=len(self.settings.all_repos()))

    # -- tasks ------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._workers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task crashed", task=task.get_name(), error=repr(task.exception()))
            if not self._draining:
                self._should_exit.set()  # a crashed core task is not something to limp on with

    async def _worker_loop(self, runner: JobRunner) -> None:
        store = self.db
        while not self._draining:
            self._work_available.clear()
            job = await asyncio.to_thread(
                store.claim,
                now=time.time(),
                lease_s=self.settings.lease_s,
                max_attempts=self.settings.job_max_attempts,
            )
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._work_available.wait(), timeout=_IDLE_POLL_S)
                continue
            self.metrics.running.inc()
            renewal = self._spawn(self._renew_lease(job.id), f"lease-{job.id}")
            try:
                await runner.run(job)
            finally:
                renewal.cancel()
                self.metrics.running.dec()
            finished = await asyncio.to_thread(store.job, job.id)
            if finished is not None and finished.state != "queued":
                self.metrics.jobs.labels(finished.state).inc()
                for step in await asyncio.to_thread(store.steps, job.id):
                    self.metrics.steps.labels(step.state).inc()

    async def _renew_lease(self, job_id: int) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            await asyncio.to_thread(
                self.db.renew, job_id, now=time.time(), lease_s=self.settings.lease_s
            )

    async def _watchdog_loop(self, interval_s: float) -> None:
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval_s)

    # -- intake -----------------------------------------------------------------------

    def _start_watching(self) -> None:
        self._watcher = DirectoryWatcher(asyncio.get_running_loop())
        self._watcher.watch(self.settings.spool_dir, self._on_spool, recursive=False)
        for repo in self.settings.all_repos():
            local = repo.local_path
            if repo.watch and local is not None:
                self._watcher.watch_refs(local, functools.partial(self._on_refs, repo.name))
        self._watcher.start()

    def _on_spool(self) -> None:
        self._spool_dirty = True
        self._intake_wanted.set()

    def _on_refs(self, name: str) -> None:
        self._dirty_repos.add(name)
        self._intake_wanted.set()

    async def _intake_loop(self) -> None:
        while True:
            await self._intake_wanted.wait()
            self._intake_wanted.clear()
            if self._spool_dirty:
                self._spool_dirty = False
                await self._drain_spool()
            dirty, self._dirty_repos = self._dirty_repos, set()
            for name in sorted(dirty):
                repo = self.settings.repo(name)
                if repo is not None:
                    await self._scan(repo, source="watch")

    async def _drain_spool(self) -> None:
        repos = self.settings.all_repos()
        for path in await asyncio.to_thread(spool.pending, self.settings.spool_dir):
            log.info("spool file read", file=path.name)
            for update in await asyncio.to_thread(_read_spool_file, path, repos):
                await self.record_event(
                    update.repo,
                    update.branch,
                    update.old,
                    update.new,
                    source="hook",
                    pusher=update.pusher,
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    async def _scan(self, repo: RepoSettings, *, source: str) -> None:
        """Compare the branch on the remote with the last tip handled; queue if it moved."""
        try:
            tip = await asyncio.to_thread(read_remote_tip, repo)
        except GitError as exc:
            log.warning("cannot read the remote", repo=repo.name, error=str(exc))
            return
        handled = await asyncio.to_thread(self.db.handled_tip, repo.name, repo.branch)
        if tip is not None and tip != handled:
            await self.record_event(repo.name, repo.branch, handled or NULL_SHA, tip, source=source)

    async def record_event(
        self,
        repo: str,
        branch: str,
        old: str,
        new: str,
        *,
        source: str,
        delivery_id: str | None = None,
        force: bool = False,
        pusher: str | None = None,
    ) -> EventResult:
        """Store a push notification durably; wake a worker when it brings work.

        Notifications arriving together are written in one transaction by the
        event writer, so a burst of webhooks costs one disk sync, not one each.
        """
        note = Notification(repo, branch, old, new, source, delivery_id, force, pusher)
        answer: asyncio.Future[EventResult] = asyncio.get_running_loop().create_future()
        self._pending_events.append((note, answer))
        self._events_waiting.set()
        result = await answer
        self.metrics.events.labels(source, result.outcome).inc()
        if result.outcome in ("queued", "coalesced"):
            self._work_available.set()
        log.info(
            "push noted",
            repo=repo,
            branch=branch,
            new=new,
            source=source,
            outcome=result.outcome,
            job=result.job_id,
        )
        return result

    async def _event_writer(self) -> None:
        while True:
            await self._events_waiting.wait()
            self._events_waiting.clear()
            batch, self._pending_events = self._pending_events, []
            if not batch:
                continue
            notes = [note for note, _ in batch]
            try:
                results = await asyncio.to_thread(self.db.record_events, notes, now=time.time())
            except Exception as exc:  # every waiting request hears about it
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), result in zip(batch, results, strict=True):
                if not answer.done():
                    answer.set_result(result)

    # -- questions for the API -------------------------------------------------------

    async def current_plan(self, repo: RepoSettings) -> Plan:
        return await asyncio.to_thread(_mirror_plan, self.settings.state_dir, repo)


def _read_spool_file(path: Path, repos: tuple[RepoSettings, ...]) -> list[spool.RefUpdate]:
    return list(spool.read(path, repos))


def _mirror_plan(state_dir: Path, repo: RepoSettings) -> Plan:
    """The current stale plan, computed in a bare mirror so no job's work tree is touched."""
    mirror = state_dir / "mirrors" / (repo.name.replace("/", "_") + ".git")
    if not mirror.is_dir():
        mirror.parent.mkdir(parents=True, exist_ok=True)
        GitRepo(mirror.parent).run("clone", "--quiet", "--bare", repo.remote, str(mirror))
    git = GitRepo(mirror)
    git.run(
        "fetch",
        "--quiet",
        "origin",
        f"+refs/heads/{repo.branch}:refs/heads/{repo.branch}",
        "+refs/notes/*:refs/notes/*",
    )
    git.run("symbolic-ref", "HEAD", f"refs/heads/{repo.branch}")
    plan, _ = compute_plan(git, repo.branch, git.text("rev-parse", "HEAD"), repo)
    return plan
