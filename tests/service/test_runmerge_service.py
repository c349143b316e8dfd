"""The daemon reruns run-merge records (commands that commit by themselves) too."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import Dataset, git
from service_helpers import Daemon, make_lab, wait_for

TALLY = "wc -l < raw/data.txt > tally.txt && git add tally.txt && git commit -q -m 'tally inner'"


def _commit_run_merge(user: Dataset) -> None:
    """What `datalad run` makes of TALLY: the command's commit, then the record on a merge."""
    before = user.head()
    user.write("tally.txt", "4\n")
    user.git("add", "tally.txt")
    user.git("commit", "-q", "-m", "tally inner")
    record = {
        "chain": [],
        "cmd": TALLY,
        "exit": 0,
        "extra_inputs": [],
        "inputs": ["raw/data.txt"],
        "outputs": [],
        "pwd": ".",
    }
    message = (
        "[DATALAD RUNCMD] tally\n\n=== Do not change lines below ===\n"
        f"{json.dumps(record, indent=1, sort_keys=True)}\n^^^ Do not change lines above ^^^\n"
    )
    merge = user.git("commit-tree", "HEAD^{tree}", "-p", before, "-p", "HEAD", "-m", message)
    user.git("reset", "-q", "--hard", merge)
    user.git("push", "-q", "origin", "HEAD:main")


def test_daemon_publishes_a_new_run_merge_on_the_tip(
    _pipeline_template: Dataset, tmp_path: Path
) -> None:
    """A stale run-merge record comes back as a new run-merge stacked on the pushed tip."""
    lab = make_lab(tmp_path, _pipeline_template)
    _commit_run_merge(lab.user)
    original = lab.user.head()
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        fix = lab.push_fix()

        wait_for(lambda: lab.subjects_since(fix)[-1:] == ["[DATALAD RUNCMD] tally"])

        first, second = git("rev-parse", "main^1", "main^2", cwd=lab.bare).split()
        assert "[DATALAD RUNCMD] report" == git("log", "-1", "--format=%s", first, cwd=lab.bare)
        assert f"tally inner\n{first}" == git("log", "-1", "--format=%s%n%P", second, cwd=lab.bare)
        lab.user.git("pull", "-q", "--ff-only", "origin", "main")
        assert "5\n" == lab.user.read("tally.txt")
        assert [original] == lab.user.record()["chain"]
    finally:
        assert 0 == daemon.stop()
