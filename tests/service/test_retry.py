"""Transient git failures are retried a few times; permanent ones fail at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from rerund.core.gitrepo import GitRepo
from rerund.errors import GitError
from rerund.service.retry import ATTEMPTS, transient_git


def test_transient_failures_are_retried_until_success() -> None:
    """A push that hits 'Connection reset' twice is tried again and succeeds the third time."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise GitError(["git", "push"], 128, "fatal: Connection reset by peer\n")
        return "pushed"

    assert "pushed" == transient_git(flaky)()
    assert 3 == len(calls)


@pytest.mark.slow
def test_permanent_failures_and_exhausted_retries_raise(tmp_path: Path) -> None:
    """A real git error that is not transient fails once; a transient one stops after ATTEMPTS."""
    repo = GitRepo(tmp_path)
    calls: list[int] = []

    def missing_remote() -> bytes:
        calls.append(1)
        return repo.run("ls-remote", str(tmp_path / "no-such-repo"))

    with pytest.raises(GitError) as failure:
        transient_git(missing_remote)()
    assert (1, False) == (len(calls), failure.value.transient)

    attempts: list[int] = []

    def always_reset() -> None:
        attempts.append(1)
        raise GitError(["git", "fetch"], 128, "fatal: the remote end hung up unexpectedly\n")

    with pytest.raises(GitError):
        transient_git(always_reset)()
    assert ATTEMPTS == len(attempts)
