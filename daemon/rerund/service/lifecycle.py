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
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import structlog
from aiohttp import web

from rerund import settings as settings_module
from rerund.core.gitrepo import NULL_SHA
from rerund.core.plan import Plan
from rerund.errors import ConfigError, GitError, RerundError
from rerund.run.local import LocalExecutor
from rerund.run.slurm import SlurmExecutor
from rerund.service.executors import ByRepository
from rerund.service.guard import startup_checks
from rerund.service.jobids import job_id_floor
from rerund.service.jobs import JobRunner, JobServices, retry_delay_s
from rerund.service.metrics import Metrics
from rerund.service.mirrors import mirror_plan
from rerund.service.notify import sd_notify, watchdog_interval_s
from rerund.service.slurmjournal import SlurmJournalStore
from rerund.service.statelock import StateLock
from rerund.service.store import EventResult, Job, Notification, Store
from rerund.service.verification import Verification
from rerund.service.workspace import read_remote_tip
from rerund.settings import RepoSettings, Settings
from rerund.triggers import spool
from rerund.triggers.watcher import DirectoryWatcher

log = structlog.get_logger("rerund.service.lifecycle")

EXIT_STARTUP_FAILED = 3
EXIT_CRASHED = 70  # EX_SOFTWARE: a core task died; systemd's Restart=on-failure restarts us
_IDLE_POLL_S = 1.0
# The store, git and file work run in the loop's default pool; steps have their own
# threads (LocalExecutor), so this pool always has room for health checks and leases.
_SPARE_THREADS = 16
# Storage errors (disk full, read-only state) are retried, not fatal; a stuck
# store is retried at most this often.
_STORAGE_ERRORS = (sqlite3.Error, OSError)
EVENTS_KEPT_S = 30 * 24 * 3600.0
_PRUNE_EVERY_S = 3600.0
_REDISCOVER_S = 1.0  # a lookup of an unknown name walks repos_dir at most this often


AppFactory = Callable[["Service"], web.Application]


class Service:
    """The daemon. ``make_app`` builds its HTTP side; the service never imports it."""

    def __init__(self, settings: Settings, make_app: AppFactory) -> None:
        self.settings = settings
        self._make_app = make_app
        self.metrics = Metrics()
        self.store: Store | None = None
        self._verification: Verification | None = None
        self.slurm_journal: SlurmJournalStore | None = None
        self._should_exit = asyncio.Event()
        self._reload = asyncio.Event()
        self._work_available = asyncio.Event()
        self._intake_wanted = asyncio.Event()
        self._dirty_repos: set[str] = set()
        self._pending_events: list[tuple[Notification, asyncio.Future[EventResult]]] = []
        self._events_waiting = asyncio.Event()
        self._spool_dirty = True
        self._stuck_spool: set[str] = set()
        self._draining = False
        self._cancel_steps = threading.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._workers: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._watcher: DirectoryWatcher | None = None
        self._services: JobServices | None = None
        self._core: dict[str, asyncio.Task[Any]] = {}
        self._crashed = False
        self._state_lock: StateLock | None = None
        self._discovered_at = 0.0
        self._discovery = asyncio.Lock()
        self._mirror_locks: dict[str, asyncio.Lock] = {}
        self.started_at = time.time()
        self.startup_error: str | None = None
        """Why start-up failed, for the command line to say in one line."""

    @property
    def db(self) -> Store:
        """The store, once started."""
        if self.store is None:
            raise RerundError("the service has not started")
        return self.store

    @property
    def verification(self) -> Verification:
        """The verification queue and verdicts, once started."""
        if self._verification is None:
            raise RerundError("the service has not started")
        return self._verification

    # -- life -------------------------------------------------------------------------

    def run(self) -> int:
        return asyncio.run(self.serve())

    async def serve(self) -> int:
        self._install_signal_handlers()
        try:
            await self.startup()
        except (RerundError, OSError, sqlite3.Error) as exc:
            self.startup_error = str(exc)
            log.error("start-up failed", error=str(exc))
            await self._close()
            return EXIT_STARTUP_FAILED
        await self.main_loop()
        await self.shutdown()
        return EXIT_CRASHED if self._crashed else 0

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._should_exit.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)

    async def startup(self) -> None:
        # Before anything else: a second daemon must not recover the first one's jobs.
        self._state_lock = StateLock(self.settings.state_dir)
        self._state_lock.acquire()
        settings = self.settings = await asyncio.to_thread(settings_module.discover, self.settings)
        self._discovered_at = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(
            ThreadPoolExecutor(settings.max_concurrent_steps + _SPARE_THREADS, "rerund")
        )
        await asyncio.to_thread(startup_checks, settings)
        self.store = await asyncio.to_thread(Store, settings.state_dir / "rerund.sqlite")
        journal = self.slurm_journal = await asyncio.to_thread(
            SlurmJournalStore, settings.state_dir / "rerund.sqlite"
        )
        if not await asyncio.to_thread(self.store.jobs, limit=1):  # a new or lost store
            floor = await asyncio.to_thread(job_id_floor, settings)
            await asyncio.to_thread(self.store.raise_job_id_floor, floor)
        requeued = await asyncio.to_thread(
            self.store.recover, max_attempts=settings.job_max_attempts
        )
        gid = await asyncio.to_thread(spool.spool_gid, settings.spool_group, settings.all_repos())
        spool.prepare_spool(settings.spool_dir, gid)
        self._verification = await asyncio.to_thread(
            Verification,
            lambda: self.settings,
            self.metrics.registry,
            max_parallel=settings.max_concurrent_steps,
        )
        self._spawn(self._verification.run(), "verification")
        self._spawn(self._event_writer(), "event-writer", core=True)
        self._runner = web.AppRunner(self._make_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, settings.listen_host, settings.listen_port, reuse_address=True
        )
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
            where = f"{settings.listen_host}:{settings.listen_port}"
            raise ConfigError(f"cannot listen on {where}: {reason} (http.listen)") from exc
        self._start_watching()
        self._dirty_repos = {repo.name for repo in settings.all_repos()}
        self._intake_wanted.set()
        self._spawn(self._intake_loop(), "intake", core=True)
        services = self._services = JobServices(
            settings=settings,
            store=self.store,
            executor=ByRepository(
                lambda: self.settings,
                LocalExecutor(settings.max_concurrent_steps),
                SlurmExecutor(
                    lambda name: self.settings.repo(name),  # noqa: PLW0108 - reloaded settings
                    journal,
                    settings.state_dir,
                    settings.max_concurrent_steps,
                ),
            ),
            step_slots=asyncio.Semaphore(settings.max_concurrent_steps),
            cancel=self._cancel_steps,
        )
        for number in range(settings.max_concurrent_steps):
            self._workers.add(
                self._spawn(self._worker_loop(JobRunner(services)), f"worker-{number}", core=True)
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
        if not settings.all_repos():  # running, but nothing will ever happen: say why
            where = str(settings.source or "a settings file given with --config")
            log.warning(
                "no repositories configured",
                hint=f"add a [[repos]] table or repos_dir to {where}"
                " (config/rerund.toml shows how), then send SIGHUP or restart",
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
        if self._verification is not None:
            self._verification.close()
            self._verification = None
        if self.slurm_journal is not None:
            self.slurm_journal.close()
            self.slurm_journal = None
        if self._state_lock is not None:
            self._state_lock.release()
            self._state_lock = None

    async def _reload_settings(self) -> None:
        try:
            fresh = await asyncio.to_thread(settings_module.load, self.settings.source)
            fresh = await asyncio.to_thread(settings_module.discover, fresh)
            await asyncio.to_thread(startup_checks, fresh)
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

    def _spawn(
        self, coroutine: Coroutine[Any, Any, Any], name: str, *, core: bool = False
    ) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        if core:
            self._core[name] = task
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._workers.discard(task)
        if self._draining or self._should_exit.is_set():
            return
        if task.get_name() in self._core and self._core[task.get_name()] is task:
            # A core task never ends on its own: any end is a crash, never a success.
            error = None if task.cancelled() else task.exception()
            log.error("core task died", task=task.get_name(), error=repr(error))
            self._crashed = True
            self._should_exit.set()
        elif not task.cancelled() and task.exception() is not None:
            log.error("task crashed", task=task.get_name(), error=repr(task.exception()))

    def down_tasks(self) -> list[str]:
        """Core tasks (intake, event writer, workers) that are not running."""
        if self._draining:
            return []
        return sorted(name for name, task in self._core.items() if task.done())

    async def _worker_loop(self, runner: JobRunner) -> None:
        failures = 0
        while not self._draining:
            try:
                await self._work_once(runner)
                failures = 0
            except _STORAGE_ERRORS as exc:  # the store is unwritable: wait, don't die
                failures += 1
                log.error("storage error in a worker; retrying", error=str(exc))
                await asyncio.sleep(retry_delay_s(failures))

    async def _work_once(self, runner: JobRunner) -> None:
        store = self.db
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
            return
        self.metrics.running.inc()
        renewal = self._spawn(self._renew_lease(job, runner), f"lease-{job.id}")
        try:
            await runner.run(job)
        finally:
            renewal.cancel()
            self.metrics.running.dec()
        finished = await asyncio.to_thread(store.job, job.id)
        if finished is not None and finished.state not in ("queued", "running"):
            self.metrics.jobs.labels(finished.state).inc()
            for step in await asyncio.to_thread(store.steps, job.id):
                self.metrics.steps.labels(step.state).inc()
        if finished is not None and finished.state == "queued":
            self._work_available.set()  # retried later: let an idle worker look again

    async def _renew_lease(self, job: Job, runner: JobRunner) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                held = await asyncio.to_thread(self.db.renew, job, lease_s=self.settings.lease_s)
            except _STORAGE_ERRORS as exc:
                log.error("cannot renew a lease", job=job.id, error=str(exc))
                continue
            if not held:
                current = await asyncio.to_thread(self.db.job, job.id)
                if (
                    current is not None
                    and current.attempts == job.attempts
                    and current.state not in ("queued", "running")
                ):
                    return  # the job finished just before this renewal: nothing was lost
                log.error("lease lost; stopping the job", job=job.id)
                runner.lease_lost()
                return

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
        failures = 0
        while True:
            await self._intake_wanted.wait()
            self._intake_wanted.clear()
            try:
                await self._intake_once()
                failures = 0
            except _STORAGE_ERRORS as exc:
                # Disk full, read-only state: what was not recorded stays in the spool
                # (and the remote), so nothing is lost; try again later.
                failures += 1
                delay_s = retry_delay_s(failures)
                log.error("storage error in intake; retrying", error=str(exc), retry_in_s=delay_s)
                self._spool_dirty = True
                self._dirty_repos.update(repo.name for repo in self.settings.all_repos())
                await asyncio.sleep(delay_s)
                self._intake_wanted.set()

    async def _intake_once(self) -> None:
        if self._spool_dirty:
            self._spool_dirty = False
            await self._drain_spool()
        dirty, self._dirty_repos = self._dirty_repos, set()
        for name in sorted(dirty):
            repo = self.settings.repo(name)
            if repo is not None:
                try:
                    await self._scan(repo, source="watch")
                except BaseException:
                    self._dirty_repos.add(name)
                    raise

    async def _drain_spool(self) -> None:
        repos = self.settings.all_repos()
        for path in await asyncio.to_thread(spool.pending, self.settings.spool_dir):
            if path.name in self._stuck_spool:
                continue
            try:
                updates = await asyncio.to_thread(spool.read, path, repos)
            except spool.SpoolRejectedError as exc:
                if await asyncio.to_thread(spool.set_aside, path, str(exc)) is None:
                    self._stuck_spool.add(path.name)
                continue
            log.info("spool file read", file=path.name, updates=len(updates))
            for update in updates:
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
        pruned_at = 0.0
        while True:
            await self._events_waiting.wait()
            self._events_waiting.clear()
            batch, self._pending_events = self._pending_events, []
            if not batch:
                continue
            if time.time() - pruned_at > _PRUNE_EVERY_S:
                pruned_at = time.time()
                with contextlib.suppress(*_STORAGE_ERRORS):  # only housekeeping
                    await asyncio.to_thread(self.db.prune_events, before=pruned_at - EVENTS_KEPT_S)
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

    async def find_repo(self, name: str) -> RepoSettings | None:
        """The repository ``name``; under ``repos_dir``, a miss looks again (once a second)."""
        repo = self.settings.repo(name)
        if repo is not None or self.settings.repos_dir is None:
            return repo
        async with self._discovery:  # one walk at a time, shared by every waiting miss
            if time.monotonic() - self._discovered_at >= _REDISCOVER_S:
                fresh = await asyncio.to_thread(settings_module.discover, self.settings)
                self._discovered_at = time.monotonic()
                self._use_settings(replace(self.settings, discovered=fresh.discovered))
        return self.settings.repo(name)

    def _use_settings(self, settings: Settings) -> None:
        self.settings = settings
        if self._services is not None:
            self._services.settings = settings

    async def current_plan(self, repo: RepoSettings) -> Plan:
        # One writer per mirror: concurrent fetches into one bare repository break it.
        lock = self._mirror_locks.setdefault(repo.slug, asyncio.Lock())
        async with lock:
            return await asyncio.to_thread(
                mirror_plan, self.settings.state_dir, repo, self.settings
            )
