"""The daemon's work clones check out without git-annex's filter: annexed inputs still arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import Dataset, git, run
from service_helpers import Daemon, Lab, make_lab, wait_for

RERUNS = ["[DATALAD RUNCMD] clean", "[DATALAD RUNCMD] stats", "[DATALAD RUNCMD] report"]


@pytest.fixture
def annex_lab(_annex_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    """The all-annex pipeline on a server with its own annex, content uploaded."""
    return make_lab(tmp_path, _annex_pipeline_template, annex_remote=True)


def _push(lab: Lab, message: str, path: str, text: str, *, unlocked: bool) -> str:
    """Commit ``text`` to ``path`` as an annexed file, upload its content, then push."""
    user = lab.user
    target = user.path / path
    target.unlink()
    target.write_text(text, encoding="utf-8")
    unlock = ["-c", f"annex.addunlocked={'true' if unlocked else 'false'}"]
    run("git", *unlock, "annex", "add", "--quiet", path, cwd=user.path)
    user.git("commit", "-qm", message)
    run("git", "annex", "copy", "--quiet", "--to", "origin", path, cwd=user.path)
    run("git", "annex", "sync", "--quiet", "--only-annex", "--no-content", cwd=user.path)
    user.git("push", "-q", "origin", "HEAD:main")
    return user.head()


def _annexed_text(lab: Lab, path: str) -> str:
    """The content the server's annex holds for ``path`` on main."""
    pointer = git("cat-file", "-p", f"main:{path}", cwd=lab.bare)
    stored = run("git", "annex", "contentlocation", Path(pointer).name, cwd=lab.bare)
    return (lab.bare / stored.stdout.strip()).read_text(encoding="utf-8")


def test_unlocked_input_whose_content_the_clone_holds_is_filled_in(annex_lab: Lab) -> None:
    """An input checked out as pointer text, content present and unseen by git-annex, is filled in.

    Job 1 fetches the unlocked raw/data.txt's content; git-annex sees that tree.
    Job 2 (the file locked, same key: nothing to rerun) runs no git-annex command.
    Job 3 (unlocked again, and the step's script edited) checks the file out
    without git-annex's filter as pointer text. Its index entry is the one
    git-annex saw last, so neither ``git annex get`` nor ``smudge --update`` fills
    it: only rerund's fill-in puts the data where the step reads it. The same data
    then reproduces clean's output identically (the later steps are cut off), and
        the input stays annexed.
    """
    lab = annex_lab
    user = lab.user
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, timeout_s=90, what="the start-up scan to finish")
        fix = _push(lab, "fix raw data", "raw/data.txt", "5\n4\n", unlocked=True)
        assert git("cat-file", "-p", "main:raw/data.txt", cwd=lab.bare).startswith("/annex/")
        wait_for(lambda: RERUNS == lab.subjects_since(fix), timeout_s=90, what="the reruns")
        assert "4\n5\n" == _annexed_text(lab, "work/clean.txt")

        user.git("pull", "-q", "--ff-only", "origin", "main")
        run("git", "annex", "lock", "raw/data.txt", cwd=user.path)
        user.git("commit", "-qm", "lock the raw data")
        user.git("push", "-q", "origin", "HEAD:main")
        wait_for(lambda: len(daemon.jobs()) == 3 and daemon.idle(), timeout_s=90, what="job 2")
        assert [] == daemon.get(f"/api/jobs/{daemon.jobs()[0]['id']}")["steps"]

        run("git", "annex", "unlock", "raw/data.txt", cwd=user.path)
        script = user.read("code/clean.sh") + "# a comment: same command, new script\n"
        tip = _push(lab, "unlock the raw data again", "code/clean.sh", script, unlocked=False)

        wait_for(lambda: len(daemon.jobs()) == 4 and daemon.idle(), timeout_s=90, what="job 3")
        steps = daemon.get(f"/api/jobs/{daemon.jobs()[0]['id']}")["steps"]
        # The filled-in data reproduces clean's output identically, so the steps after it,
        # whose inputs did not change, are cut off (issue 10) instead of run.
        assert ["identical", "cut-off", "cut-off"] == [step["state"] for step in steps]
        assert tip == lab.tip()
        assert git("cat-file", "-p", "main:raw/data.txt", cwd=lab.bare).startswith("/annex/")
    finally:
        daemon.stop()
