"""The Slurm executor: each step's command is one Slurm batch job; the rest stays here.

Getting inputs, unlocking outputs, saving and committing run in the daemon, so
git keeps one writer. Each step gets its own git worktree under the shared
``workdir`` (on the step's ``HEAD``), so a daemon that restarts and resets its
work clone never touches a tree a cluster job is writing to.

Slurm is reached with its own commands (``sbatch --parsable``, ``scontrol show
job -o``, ``squeue``, ``scancel``), polled at ``poll_interval_s``. Before the
daemon waits on a job, the job is written to a journal with everything needed
to finish it (the prepared command, the worktree, the output file), so a
restarted daemon re-attaches to it instead of submitting it again, and never
cancels cluster work because it restarted itself.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn, Protocol

import structlog

from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER, GitRepo
from rerund.core.plan import Step
from rerund.errors import (
    RerundError,
    StepCancelledError,
    StepFailedError,
    StepSupersededError,
)
from rerund.run.execute import (
    ExecOptions,
    PreparedStep,
    StepContext,
    StepResult,
    StepScope,
    execute_step,
)
from rerund.run.slurmres import StepResources
from rerund.settings import RepoSettings, SlurmSettings

log = structlog.get_logger("rerund.run.slurm")

MAX_RETRIES = 2
"""Resubmissions after the cluster lost a job (NODE_FAIL, PREEMPTED, BOOT_FAIL)."""
_RETRIED = ("NODE_FAIL", "PREEMPTED", "BOOT_FAIL")
_ACTIVE = frozenset(
    [
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "RESV_DEL_HOLD",
    ]
)
_MEMORY_KILL = "exceeded memory limit"  # what slurmstepd writes to the job's output
_SLICE_S = 0.1
_SLURM_TIME = "%Y-%m-%dT%H:%M:%S"


@dataclass
class SlurmEntry:
    """One step handed to Slurm, as the journal keeps it (keyed by repo, record, head)."""

    repo: str
    record: str
    head: str
    job_id: int
    position: int
    name: str
    work_tree: str
    out_path: str
    prepared: str
    """The prepared command as JSON: what a restarted daemon needs to finish the step."""
    state: str = "submitting"
    """``submitting``, then Slurm's job state, then ``committed``/``identical``/``failed``."""
    slurm_id: str | None = None
    node: str | None = None
    reason: str | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    retries: int = 0
    new_commit: str | None = None
    error: str | None = None


_FINAL = ("committed", "identical", "failed", "cancelled")


class SlurmJournal(Protocol):
    """Durable state of Slurm-run steps (the daemon keeps it in its store)."""

    def load(self, repo: str, record: str, head: str) -> SlurmEntry | None: ...

    def save(self, entry: SlurmEntry) -> None: ...


@dataclass(frozen=True)
class JobInfo:
    """What ``scontrol show job -o`` says of one job."""

    state: str
    reason: str
    node: str | None
    exit_code: int
    signal: int
    queued_s: float | None = None
    """From submission to start, by Slurm's clock; ``None`` while the job waits."""

    @classmethod
    def parse(cls, line: str) -> JobInfo:
        fields = dict(item.partition("=")[::2] for item in line.split())
        exit_code, _, signal = fields.get("ExitCode", "0:0").partition(":")
        node = fields.get("NodeList")
        return cls(
            state=fields.get("JobState", "UNKNOWN"),
            reason=fields.get("Reason", "None"),
            node=None if node in (None, "(null)", "") else node,
            exit_code=int(exit_code or 0),
            signal=int(signal or 0),
            queued_s=_seconds_between(fields.get("SubmitTime"), fields.get("StartTime")),
        )


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        first, last = (
            time.mktime(time.strptime(t or "", "%Y-%m-%dT%H:%M:%S")) for t in (start, end)
        )
    except ValueError:  # "Unknown", "None": not started yet
        return None
    return max(0.0, last - first)


class SlurmUnreachableError(RerundError):
    """A Slurm command could not be run or did not answer."""


class Slurm:
    """Slurm's own commands, with the daemon's environment (``SLURM_CONF`` and all)."""

    def _run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                args, input=stdin, capture_output=True, text=True, check=False, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmUnreachableError(f"cannot run {args[0]}: {exc}") from exc

    def submit(self, argv: list[str], script: str) -> str:
        done = self._run("sbatch", "--parsable", *argv, stdin=script)
        if done.returncode != 0:
            raise RerundError(f"sbatch refused the step: {done.stderr.strip()}")
        return done.stdout.strip().split(";")[0]

    def show(self, slurm_id: str) -> JobInfo | None:
        """The job's state; ``None`` once Slurm has forgotten it (after ``MinJobAge``)."""
        done = self._run("scontrol", "show", "job", "-o", slurm_id)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return self.accounted(slurm_id)
            raise SlurmUnreachableError(
                f"scontrol show job {slurm_id} failed: {done.stderr.strip()}"
            )
        return JobInfo.parse(done.stdout)

    def accounted(self, slurm_id: str) -> JobInfo | None:
        """The job as ``sacct`` remembers it, where the cluster keeps accounting."""
        fields = "State,ExitCode,NodeList,Submit,Start"
        done = self._run("sacct", "-n", "-P", "-X", "-j", slurm_id, "-o", fields)
        line = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout else ""
        parts = line.split("|")
        if len(parts) != len(fields.split(",")):
            return None  # no accounting here, or no such job
        state, exit_code, node, submit, start = parts
        return JobInfo.parse(
            f"JobState={state.split()[0]} ExitCode={exit_code} NodeList={node or '(null)'}"
            f" SubmitTime={submit} StartTime={start}"
        )

    def find(self, name: str) -> str | None:
        """A job of that name Slurm still knows (submitted just before a crash)."""
        done = self._run("squeue", "--noheader", "--states=all", "--name", name, "--format=%i")
        ids = done.stdout.split() if done.returncode == 0 else []
        return ids[-1] if ids else None

    def cancel(self, slurm_id: str) -> None:
        self._run("scancel", slurm_id)


class SlurmExecutor:
    """Runs each step's command as one Slurm job (see the module's text)."""

    def __init__(
        self,
        settings: Callable[[str], RepoSettings | None],
        journal: SlurmJournal,
        state_dir: Path,
        max_steps: int = 1,
        slurm: Slurm | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._state_dir = state_dir
        self._slurm = slurm or Slurm()
        self._pool = ThreadPoolExecutor(max_steps, thread_name_prefix="rerund-slurm")

    async def run_step(
        self, repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult:
        loop = asyncio.get_running_loop()
        call = functools.partial(self._run_step, repo, step, head, context, options)
        return await loop.run_in_executor(self._pool, contextvars.copy_context().run, call)

    def _run_step(
        self, repo: GitRepo, step: Step, head: str, context: StepContext, options: ExecOptions
    ) -> StepResult:
        scope = options.scope
        repo_settings = self._settings(scope.repo) if scope is not None else None
        if scope is None or repo_settings is None:
            raise RerundError("a Slurm step needs its repository and job (no scope given)")
        entry = self._journal.load(scope.repo, step.commit, head)
        if entry is not None and entry.state in ("committed", "identical"):
            reused = self._reuse(repo, step, head, entry, options)
            if reused is not None:
                return reused
        base = repo_settings.slurm
        resources = StepResources.read(repo, head).for_step(step, base)
        workdir = base.workdir or self._state_dir / "slurm"
        key = f"{step.commit[:12]}-{head[:12]}"
        tree = workdir / repo_settings.slug / key
        live = entry is not None and entry.state not in _FINAL and tree.is_dir()
        if entry is None or not live:
            _add_worktree(repo, tree, head)
            entry = SlurmEntry(
                repo=scope.repo,
                record=step.commit,
                head=head,
                job_id=scope.job_id,
                position=scope.position,
                name=f"rerund-{repo_settings.slug}-{key}"[:120],
                work_tree=str(tree),
                out_path=str(workdir / repo_settings.slug / f"{key}.out"),
                prepared="",
            )
        entry.job_id, entry.position = scope.job_id, scope.position
        command = _SlurmCommand(self._slurm, self._journal, entry, resources, scope, live=live)
        tree_repo = GitRepo(tree, env=dict(repo.env))
        try:
            result = execute_step(
                tree_repo,
                step,
                head,
                replace(context, annex_add=None),  # the batch belongs to the main clone
                replace(options, runner=command),
            )
        except StepSupersededError as exc:
            self._close(repo, entry, "cancelled", error=str(exc))
            raise
        except StepCancelledError:
            raise  # a daemon stopping leaves the job running; a restart re-attaches
        except RerundError as exc:
            self._close(repo, entry, "failed", error=str(exc))
            raise
        if result.new_commit is not None:
            # The main clone follows, for the next step and for publishing.
            repo.run(*WITHOUT_ANNEX_FILTER, "reset", "--quiet", "--hard", result.new_commit)
        entry.new_commit = result.new_commit
        self._close(repo, entry, result.outcome)
        return result

    def _reuse(
        self, repo: GitRepo, step: Step, head: str, entry: SlurmEntry, options: ExecOptions
    ) -> StepResult | None:
        """A step finished before a restart: its commit is taken, nothing submitted again."""
        new = entry.new_commit
        if new is not None and repo.resolve(new) is None:
            return None
        if new is not None:
            repo.run(*WITHOUT_ANNEX_FILTER, "reset", "--quiet", "--hard", new)
        log.info("slurm step reused", slurm_id=entry.slurm_id, new_commit=new)
        return StepResult(
            step=step,
            outcome="committed" if new else "identical",
            new_commit=new,
            head=new or head,
            exit_code=0,
            duration_s=0.0,
            log_path=options.log_dir / f"{step.commit[:12]}.log",
        )

    def _close(
        self, repo: GitRepo, entry: SlurmEntry, state: str, error: str | None = None
    ) -> None:
        entry.state, entry.error, entry.finished_at = state, error, time.time()
        self._journal.save(entry)
        repo.run("worktree", "remove", "--force", entry.work_tree, check=False)
        shutil.rmtree(entry.work_tree, ignore_errors=True)
        repo.run("worktree", "prune", check=False)


def _add_worktree(repo: GitRepo, tree: Path, head: str) -> None:
    """A fresh worktree of ``repo`` at ``head``, sharing its objects and annex."""
    if tree.exists():
        repo.run("worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(tree, ignore_errors=True)
    repo.run("worktree", "prune", check=False)
    tree.parent.mkdir(parents=True, exist_ok=True)
    repo.run(
        *WITHOUT_ANNEX_FILTER,
        "-c",
        "core.hooksPath=/dev/null",
        "worktree",
        "add",
        "--quiet",
        "--detach",
        str(tree),
        head,
    )
    if (repo.common_dir / "annex").is_dir():
        # What git-annex does in a linked worktree: `.git` a link to its git dir, which
        # links the shared annex, so the tree's annex links resolve.
        gitdir = Path((tree / ".git").read_text().removeprefix("gitdir:").strip())
        annex = gitdir / "annex"
        if not annex.exists():
            annex.symlink_to(Path("..") / ".." / "annex")
        (tree / ".git").unlink()
        (tree / ".git").symlink_to(gitdir)


class _SlurmCommand:
    """The ``CommandRunner`` of one Slurm step: submit (or re-attach), poll, map the end."""

    def __init__(
        self,
        slurm: Slurm,
        journal: SlurmJournal,
        entry: SlurmEntry,
        resources: SlurmSettings,
        scope: StepScope,
        *,
        live: bool,
    ) -> None:
        self._slurm = slurm
        self._journal = journal
        self._entry = entry
        self._resources = resources
        self._scope = scope
        self._live = live

    def attached(self, step: Step, head: str) -> PreparedStep | None:
        if not self._live or not self._entry.prepared:
            return None
        data = json.loads(self._entry.prepared)
        log.info("slurm step re-attached", slurm_id=self._entry.slurm_id, state=self._entry.state)
        return PreparedStep(
            data["command"], Path(data["exec_dir"]), data["relock"], tuple(data["warnings"])
        )

    def run(self, prepared: PreparedStep, step: Step, log_path: Path, options: ExecOptions) -> int:
        entry = self._entry
        if not entry.prepared:
            entry.prepared = json.dumps(
                {
                    "command": prepared.command,
                    "exec_dir": str(prepared.exec_dir),
                    "relock": prepared.relock,
                    "warnings": list(prepared.warnings),
                }
            )
        if entry.slurm_id is None and entry.state == "submitting" and self._live:
            entry.slurm_id = self._slurm.find(entry.name)  # sbatch ran, the daemon died
        if entry.slurm_id is None:
            self._submit(prepared)
        while True:
            info = self._wait(step, options)
            if info is not None and info.state in _RETRIED and entry.retries < MAX_RETRIES:
                log.warning("slurm lost the step; submitting again", state=info.state)
                entry.retries += 1
                self._submit(prepared)
                continue
            break
        self._copy_output(prepared, log_path, options.max_log_bytes)
        return self._exit_code(step, info, log_path)

    def _submit(self, prepared: PreparedStep) -> None:
        entry = self._entry
        entry.state, entry.slurm_id, entry.node = "submitting", None, None
        entry.submitted_at, entry.started_at = time.time(), None
        self._journal.save(entry)  # before sbatch: a crash in between finds it by name
        out = Path(entry.out_path)
        out.unlink(missing_ok=True)
        _status_file(out).unlink(missing_ok=True)
        entry.slurm_id = self._slurm.submit(self._argv(prepared), _script(prepared, out))
        entry.state = "PENDING"
        self._journal.save(entry)
        log.info("slurm step submitted", slurm_id=entry.slurm_id, name=entry.name)

    def _argv(self, prepared: PreparedStep) -> list[str]:
        res = self._resources
        argv = [
            f"--job-name={self._entry.name}",
            f"--output={self._entry.out_path}",
            f"--chdir={prepared.exec_dir}",
            "--no-requeue",  # rerund resubmits lost jobs itself, a bounded number of times
        ]
        if res.partition:
            argv.append(f"--partition={res.partition}")
        if res.time:
            argv.append(f"--time={res.time}")
        if res.mem:
            argv.append(f"--mem={res.mem}")
        if res.cpus_per_task:
            argv.append(f"--cpus-per-task={res.cpus_per_task}")
        return [*argv, *res.extra_args]

    def _wait(self, step: Step, options: ExecOptions) -> JobInfo | None:
        """Poll until the job ends; ``None`` when Slurm no longer knows it."""
        entry = self._entry
        if entry.slurm_id is None:
            return None
        interval = self._resources.poll_interval_s
        while True:
            try:
                info = self._slurm.show(entry.slurm_id)
            except SlurmUnreachableError as exc:
                # The controller restarting is no verdict on the job: keep waiting for it.
                log.warning("slurm did not answer; still waiting", error=str(exc))
                info = JobInfo("UNREACHABLE", "", entry.node, 0, 0)
            if info is None:
                return None
            if info.state != "UNREACHABLE":
                self._observe(info)
                if info.state not in _ACTIVE:
                    return info
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline:
                if options.cancel is not None and options.cancel.is_set():
                    # Stopping or lease lost: the cluster keeps working; a restart re-attaches.
                    raise StepCancelledError(
                        step.commit, f"step {step.commit[:8]} left running on Slurm"
                    )
                time.sleep(_SLICE_S)
            if self._scope.superseded():
                self._slurm.cancel(entry.slurm_id)
                self._until_gone(entry.slurm_id)
                raise StepSupersededError(
                    step.commit,
                    f"step {step.commit[:8]}: a newer push superseded the job;"
                    f" Slurm job {entry.slurm_id} was cancelled",
                )

    def _until_gone(self, slurm_id: str) -> None:
        for _ in range(600):
            info = self._slurm.show(slurm_id)
            if info is None or info.state not in _ACTIVE:
                return
            time.sleep(_SLICE_S)

    def _observe(self, info: JobInfo) -> None:
        entry = self._entry
        changed = (info.state, info.node, info.reason) != (entry.state, entry.node, entry.reason)
        if entry.started_at is None and info.queued_s is not None and entry.submitted_at:
            entry.started_at = entry.submitted_at + info.queued_s
            changed = True
        if changed:
            entry.state, entry.node, entry.reason = info.state, info.node, info.reason
            self._journal.save(entry)

    def _copy_output(self, prepared: PreparedStep, log_path: Path, cap: int | None) -> None:
        entry = self._entry
        with log_path.open("wb") as log_file:
            for warning in prepared.warnings:
                log_file.write(f"rerund: warning: {warning}\n".encode())
            log_file.write(f"$ {prepared.command}\n".encode())
            log_file.write(f"rerund: Slurm job {entry.slurm_id} on {entry.node or '?'}\n".encode())
            out = Path(entry.out_path)
            if out.exists():
                with out.open("rb") as source:
                    log_file.write(source.read(cap) if cap is not None else source.read())
                if cap is not None and out.stat().st_size > cap:
                    log_file.write(f"\nrerund: output cut after {cap} bytes\n".encode())

    def _exit_code(self, step: Step, info: JobInfo | None, log_path: Path) -> int:
        entry = self._entry
        where = f"Slurm job {entry.slurm_id}"
        if info is None:  # forgotten by Slurm (MinJobAge): the script noted its status
            status = _status_file(Path(entry.out_path))
            if status.exists():
                return int(status.read_text().strip() or 1)
            self._fail(step, f"{where} ended while rerund was away and Slurm forgot it", log_path)
        if killed_for_memory(info, log_path.read_text(errors="replace")):
            self._fail(step, f"{where} went over its memory limit and was killed", log_path)
        if info.state == "COMPLETED" or (info.state == "FAILED" and info.signal == 0):
            return info.exit_code
        if info.state == "TIMEOUT":
            limit = self._resources.time or "the partition's"
            self._fail(step, f"{where} ran over its time limit ({limit}) and was killed", log_path)
        if info.state == "CANCELLED":
            self._fail(step, f"{where} was cancelled on the cluster, not by rerund", log_path)
        detail = f"signal {info.signal}" if info.signal else f"reason {info.reason}"
        self._fail(step, f"{where} ended {info.state} ({detail})", log_path)

    def _fail(self, step: Step, why: str, log_path: Path) -> NoReturn:
        with log_path.open("ab") as log_file:
            log_file.write(f"\nrerund: {why}\n".encode())
        raise StepFailedError(
            step.commit,
            f"step {step.commit[:8]}: {why}; nothing was committed, see {log_path}",
            str(log_path),
        )


def killed_for_memory(info: JobInfo, output: str) -> bool:
    """Whether Slurm killed the job for its memory.

    slurmstepd's jobacct polling may SIGKILL the command before it marks the job: the batch
    script then exits 137 itself and the job ends FAILED with signal 0, so its output line is
    the only witness.
    """
    if info.state == "OUT_OF_MEMORY":
        return True
    return info.state == "FAILED" and _MEMORY_KILL in output.lower()


def _status_file(out: Path) -> Path:
    return out.with_name(out.name + ".status")


def _script(prepared: PreparedStep, out: Path) -> str:
    """The batch script: the command in its directory; its exit status kept beside the output."""
    directory = shlex.quote(str(prepared.exec_dir))
    status = shlex.quote(str(_status_file(out)))
    return (
        "#!/bin/sh\n"
        f"cd {directory} || exit 125\n"
        f"/bin/sh -c {shlex.quote(prepared.command)}\n"
        "code=$?\n"
        f'echo "$code" > {status}\n'
        'exit "$code"\n'
    )


def queue_wait_s(entry: SlurmEntry, now: float | None = None) -> float | None:
    """How long the step waited in Slurm's queue (so far, while still pending)."""
    if entry.submitted_at is None:
        return None
    end = entry.started_at or (now if now is not None else time.time())
    if entry.started_at is None and entry.state not in ("PENDING", "submitting"):
        return None
    return max(0.0, end - entry.submitted_at)
