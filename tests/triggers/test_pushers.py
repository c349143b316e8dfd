"""Who pushed, as each door reports it: forge payloads and the post-receive hook's spool file."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from helpers import git, run
from rerund.settings import RepoSettings
from rerund.triggers import spool
from rerund.triggers.hookinstall import install
from rerund.triggers.webhooks import Provider, PushEvent, parse, sign

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SHA_A, SHA_B = "a" * 40, "b" * 40


def _parse(provider: Provider, payload: dict[str, object]) -> PushEvent:
    body = json.dumps(payload).encode()
    event = parse(provider, sign(provider, body, "s"), body)
    assert isinstance(event, PushEvent)
    return event


@pytest.mark.parametrize(
    ("provider", "name", "pusher"),
    [("github", "github-push-new-branch.json", "Codertocat"),
     ("gitea", "gitea-push.json", "unknwon"), ("forgejo", "gitea-push.json", "unknwon")],
)  # fmt: skip
def test_forge_fixtures_name_their_pusher(provider: Provider, name: str, pusher: str) -> None:
    """GitHub's sender and Gitea's/Forgejo's pusher login come out as the event's pusher."""
    body = (FIXTURES / name).read_bytes()
    event = parse(provider, sign(provider, body, "s"), body)
    assert isinstance(event, PushEvent)
    assert pusher == event.pusher


def test_gitlab_names_user_username_and_author_fields_never_count() -> None:
    """GitLab's user_username is the pusher; a commit author's name is not, and none is None."""
    base = {"object_kind": "push", "ref": "refs/heads/main", "before": SHA_A, "after": SHA_B,
            "project": {"path_with_namespace": "lab/lab"},
            "commits": [{"author": {"name": "alice", "email": "alice@lab"}}]}  # fmt: skip
    assert "mallory" == _parse("gitlab", {**base, "user_username": "mallory"}).pusher
    assert _parse("gitlab", base).pusher is None


def test_the_hook_writes_who_pushed_into_the_spool(tmp_path: Path) -> None:
    """The real hook records GL_USERNAME (else the Unix user) and the spool reader returns it."""
    bare = tmp_path / "lab.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    spool_dir = tmp_path / "spool"
    install(bare, spool_dir)
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    git("commit", "-q", "--allow-empty", "-m", "one", cwd=work)
    run("env", "GL_USERNAME=alice", "git", "push", "-q", str(bare), "main", cwd=work)
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=work)
    git("push", "-q", str(bare), "main", cwd=work)
    repos = (RepoSettings(name="lab", remote=str(bare)),)
    updates = [u for path in spool.pending(spool_dir) for u in spool.read(path, repos)]
    unix_user = run("id", "-un").stdout.strip()
    assert ["alice", unix_user] == [update.pusher for update in updates]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to write a file as another user")
def test_a_spool_claim_from_another_account_names_that_account(tmp_path: Path) -> None:
    """Any member of the spool's group can write: a file not written by the repository's
    owner (or rerund, or root) names its owner, whatever it claims."""
    bare = tmp_path / "lab.git"
    git("init", "-q", "--bare", str(bare), cwd=tmp_path)
    forged = tmp_path / "1-1.push"
    forged.write_text(f"repo {bare}\npusher alice\n{SHA_A} {SHA_B} refs/heads/main\n")
    os.chown(forged, 65534, 65534)
    repos = (RepoSettings(name="lab", remote=str(bare)),)
    assert [pwd.getpwuid(65534).pw_name] == [u.pusher for u in spool.read(forged, repos)]
