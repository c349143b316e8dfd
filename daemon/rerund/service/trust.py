"""Whether a push may cause execution: the repository's ``trust`` policy (SPEC §7).

Checked after planning and before anything runs, on what the job would newly
act upon: the commits pushed since the last tip rerund handled, the record
commit of every step it would rerun, and every commit since that record that
changed a file the step reads. rerund's own rerun commits are its own and pass.

- ``signed``: each of those commits verifies with ``git verify-commit`` (SSH
  signatures against ``allowed_signers_file``, OpenPGP against ``gpg_home``);
- ``pushers``: every push since a job last ran on the branch was made by someone
  in ``trusted_pushers``, as authenticated by the forge or the git server, and
  at least one such push is known (author fields never count);
- ``any``: everything runs.

A refusal names the commit or the pusher and the rule; nothing runs.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rerund.core.gitrepo import NULL_SHA, GitRepo
from rerund.core.plan import Plan, Step
from rerund.errors import GitError
from rerund.security import RepoSecurity

_GLOB = set("*?[")


@dataclass(frozen=True)
class Refusal:
    reason: str
    rule: str
    """The policy that refused (``unset``, ``signed``, ``pushers``), for the metrics."""


def missing_policy(repo_name: str) -> str:
    return (
        f"repository {repo_name} has no trust policy, so nothing runs: set trust = "
        '"signed", "pushers" or "any" in its [[repos]] table (or under [security])'
    )


def check(
    repo: GitRepo,
    name: str,
    security: RepoSecurity,
    plan: Plan,
    *,
    base: str | None,
    target: str,
    own: Collection[str],
    pushers: Sequence[str | None],
) -> Refusal | None:
    """The reason ``plan`` at ``target`` may not run, or None when it may (blocking)."""
    if security.trust is None:
        return Refusal(missing_policy(name), "unset")
    if security.trust == "any" or not plan.steps:
        return None
    if security.trust == "pushers":
        return _check_pushers(security, pushers, target)
    for commit in acted_upon(repo, plan, base, target):
        if commit in own:
            continue
        problem = _signature_problem(repo, security, commit)
        if problem is not None:
            subject = repo.text("log", "-1", "--format=%s", commit)
            return Refusal(
                f"commit {commit[:12]} ({subject[:60]}) has no good signature, and trust ="
                f' "signed" requires one on every commit a job acts upon: {problem}',
                "signed",
            )
    return None


def acted_upon(repo: GitRepo, plan: Plan, base: str | None, target: str) -> list[str]:
    """Pushed commits since ``base``, the steps' records, and what changed their inputs since."""
    commits: list[str] = []
    if base is not None and base != NULL_SHA and repo.resolve(base) is not None:
        commits += _rev_list(repo, target, f"^{base}")
    for step in plan.steps:
        commits.append(step.commit)
        paths = _read_paths(step)
        if paths:
            commits += _rev_list(repo, target, f"^{step.commit}", "--", *paths)
    return list(dict.fromkeys(commits))


def _read_paths(step: Step) -> list[str]:
    """The paths whose change made the step stale, and its declared inputs without globs."""
    paths = [reason.path for reason in step.reasons if reason.path]
    for spec in [*step.record.inputs, *step.record.extra_inputs]:
        if not _GLOB & set(spec) and "{" not in spec:
            paths.append(posixpath.normpath(posixpath.join(step.record.pwd, spec)))
    return [path for path in dict.fromkeys(paths) if path not in (".", "")]


def _rev_list(repo: GitRepo, *args: str) -> list[str]:
    return repo.text("rev-list", *args).split()


def _signature_problem(repo: GitRepo, security: RepoSecurity, commit: str) -> str | None:
    config: list[str] = []
    if security.allowed_signers_file is not None:
        config += ["-c", f"gpg.ssh.allowedSignersFile={security.allowed_signers_file}"]
    env = {"GNUPGHOME": str(security.gpg_home)} if security.gpg_home is not None else {}
    try:
        repo.run(*config, "verify-commit", "--raw", commit, env=env)
    except GitError as exc:
        lines = [line for line in exc.stderr.strip().splitlines() if line.strip()]
        return lines[-1] if lines else "it is not signed"
    return None


def _check_pushers(
    security: RepoSecurity, pushers: Sequence[str | None], target: str
) -> Refusal | None:
    known = [pusher for pusher in pushers if pusher is not None]
    stranger = next((p for p in known if p not in security.trusted_pushers), None)
    if stranger is not None:
        return Refusal(
            f"a push since the last run was made by {stranger!r}, who is not in"
            f' trusted_pushers (trust = "pushers"); {target[:12]} does not run',
            "pushers",
        )
    if not known:
        return Refusal(
            f'no authenticated pusher is known for {target[:12]} (trust = "pushers" needs'
            " the post-receive hook or a forge webhook to say who pushed)",
            "pushers",
        )
    return None
