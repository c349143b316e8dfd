"""The daemon's side of SPEC §7: the trust gate before a plan runs, the sandbox around it.

``startup_checks`` runs once: the sandbox must work (or be switched off
explicitly) and every repository's policy is logged. ``confine`` turns the
settings into a step's sandbox, environment, log limit and secrets to scrub.
``gate`` asks :mod:`rerund.service.trust` whether a job's plan may run.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import structlog

from rerund.core.gitrepo import GitRepo
from rerund.core.plan import Plan
from rerund.run.execute import ExecOptions
from rerund.run.sandbox import NOBODY, Limits, Sandbox, check_available, step_env
from rerund.service import trust
from rerund.service.store import Job, Store
from rerund.settings import RepoSettings, Settings

log = structlog.get_logger("rerund.service.guard")

_SYSTEM_DIRS = {Path(p) for p in ("/", "/etc", "/usr", "/var", "/srv", "/opt", "/home")}


def run_as() -> tuple[int, int] | None:
    """Steps of a daemon running as root run as ``nobody`` (RLIMIT_NPROC spares root)."""
    return NOBODY if os.geteuid() == 0 else None


def startup_checks(settings: Settings) -> None:
    """Refuse to start without a working sandbox; say which repositories run nothing.

    With nothing to serve (the embedded defaults), nothing could run: the check
    waits for the first repository, which a reload refuses to add without it.
    """
    if settings.sandbox == "bwrap" and settings.all_repos():
        check_available(run_as())
    else:
        log.warning("sandbox is off: steps run with the daemon's own rights", sandbox="none")
        (settings.state_dir / "home").mkdir(exist_ok=True)  # the steps' $HOME
    for repo in settings.all_repos():
        if repo.security.trust is None:
            log.warning(
                "repository runs nothing", repo=repo.name, reason=trust.missing_policy(repo.name)
            )
        elif repo.security.trust == "any":
            log.warning("trust = any: every push may run commands", repo=repo.name)


def confine(options: ExecOptions, settings: Settings, repo: RepoSettings) -> ExecOptions:
    """``options`` with the repository's sandbox, a bare environment and its limits."""
    security = repo.security
    sandbox = None
    passed = tuple((name, os.environ[name]) for name in security.pass_env if name in os.environ)
    env = {**step_env(home=str(settings.state_dir / "home")), **dict(passed)}
    if settings.sandbox == "bwrap":
        sandbox = Sandbox(
            hidden=hidden_paths(settings),
            network=security.network,
            limits=Limits(security.memory_mb, security.max_processes),
            run_as=run_as(),
            extra_env=passed,
        )
        env = {"PATH": env["PATH"]}  # bubblewrap sets the step's environment itself
    return replace(
        options,
        sandbox=sandbox,
        env=env,
        # [limits] and [security] both cap a step's log: the tighter one holds.
        max_log_bytes=min(options.max_log_bytes or security.max_log_bytes, security.max_log_bytes),
        scrub=secret_values(settings),
    )


def hidden_paths(settings: Settings) -> tuple[Path, ...]:
    """What a step must never see: the daemon's state, settings, secrets and repositories."""
    paths = [settings.state_dir]
    if settings.source is not None:
        paths.append(settings.source)
        if settings.source.parent not in _SYSTEM_DIRS:
            paths.append(settings.source.parent)  # secret files usually sit beside it
    if settings.repos_dir is not None:
        paths.append(settings.repos_dir)
    for repo in settings.all_repos():
        if repo.local_path is not None:
            paths.append(repo.local_path)
        if repo.security.gpg_home is not None:
            paths.append(repo.security.gpg_home)
    return tuple(dict.fromkeys(path.resolve() for path in paths))


def secret_values(settings: Settings) -> tuple[str, ...]:
    values = [settings.api_token, settings.read_token]
    for repo in settings.all_repos():
        values.extend(repo.secrets.values())
    return tuple(value for value in values if value)


def gate(
    store: Store, repo: GitRepo, settings: RepoSettings, job: Job, plan: Plan, *, target: str
) -> tuple[trust.Refusal | None, str | None]:
    """Whether the plan may run (blocking), and the tip to record as handled if it may not.

    Signed: the refused commits count as handled, so a later push is checked on
    what it adds and what it acts upon. Pushers, or no policy: nothing moves, so
    the same tip runs once a trusted push or a new configuration allows it.
    """
    handled = store.handled_tip(job.repo, job.branch)
    refusal = trust.check(
        repo,
        settings.name,
        settings.security,
        plan,
        base=handled,
        target=target,
        own=store.own_commits(job.repo) if settings.security.trust == "signed" else (),
        pushers=store.pushers_since_handled(job.repo, job.branch, target),
    )
    keep = target if settings.security.trust == "signed" else handled
    return refusal, keep
