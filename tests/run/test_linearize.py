"""Commits made side by side are laid into one linear history (issue 10, run/linearize.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import git
from rerund.core.gitrepo import GitRepo
from rerund.run.linearize import ConflictError, Made, linearize


def _commit_on(repo: Path, base: str, path: str, text: str, message: str) -> str:
    git("checkout", "-q", "--detach", base, cwd=repo)
    (repo / path).write_text(text)
    git("add", path, cwd=repo)
    git("commit", "-qm", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git("init", "-q", str(tmp_path / "r"), cwd=tmp_path)
    path = tmp_path / "r"
    (path / "base.txt").write_text("base\n")
    git("add", "base.txt", cwd=path)
    git("commit", "-qm", "base", cwd=path)
    return path


def test_independent_commits_become_one_chain_with_both_changes(repo: Path) -> None:
    """Two commits on the same base: the second is re-made on the first, message kept."""
    base = git("rev-parse", "HEAD", cwd=repo)
    first = _commit_on(repo, base, "a.txt", "a\n", "[DATALAD RUNCMD] a\n\nbody")
    second = _commit_on(repo, base, "b.txt", "b\n", "[DATALAD RUNCMD] b")

    made = linearize(GitRepo(repo), base, [Made(base, first), Made(base, second)])

    assert first == made[0]  # already on the chain: kept as it is
    assert [made[0]] == git("log", "-1", "--format=%P", made[1], cwd=repo).split()
    assert "a\n" == git("show", f"{made[1]}:a.txt", cwd=repo) + "\n"
    assert "b\n" == git("show", f"{made[1]}:b.txt", cwd=repo) + "\n"
    assert "[DATALAD RUNCMD] b" == git("log", "-1", "--format=%B", made[1], cwd=repo)


def test_two_commits_changing_one_path_are_a_conflict(repo: Path) -> None:
    """rerund never merges results: the same path changed twice side by side raises."""
    base = git("rev-parse", "HEAD", cwd=repo)
    first = _commit_on(repo, base, "same.txt", "one\n", "one")
    second = _commit_on(repo, base, "same.txt", "two\n", "two")

    with pytest.raises(ConflictError, match=r"same\.txt"):
        linearize(GitRepo(repo), base, [Made(base, first), Made(base, second)])


def test_a_run_merge_made_side_by_side_keeps_its_own_commit_and_merge(repo: Path) -> None:
    """A run-merge re-made on the chain is still a merge of the command's own commit."""
    base = git("rev-parse", "HEAD", cwd=repo)
    first = _commit_on(repo, base, "a.txt", "a\n", "[DATALAD RUNCMD] a")
    inner = _commit_on(repo, base, "tally.txt", "4\n", "tally inner")
    tree = f"{inner}^{{tree}}"
    merge = git(
        "commit-tree", tree, "-p", base, "-p", inner, "-m", "[DATALAD RUNCMD] tally", cwd=repo
    )

    made = linearize(GitRepo(repo), base, [Made(base, first), Made(base, merge)])

    mainline, own = git("log", "-1", "--format=%P", made[1], cwd=repo).split()
    assert first == mainline
    assert f"tally inner\n{first}" == git("log", "-1", "--format=%s%n%P", own, cwd=repo)
    assert "[DATALAD RUNCMD] tally" == git("log", "-1", "--format=%B", made[1], cwd=repo)
    assert ("a", "4") == tuple(
        git("show", f"{made[1]}:{p}", cwd=repo) for p in ("a.txt", "tally.txt")
    )
