"""Outputs rerund writes into a served subdataset reach it first, and never dangle (issue 7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import Dataset, datalad, git
from served_chain import Chain, publish
from service_helpers import API_TOKEN, Daemon, Lab, free_port, rerund_cli, wait_for

SUMMARY = "(wc -l < {inputs}; printf '\\000') > {outputs}"  # binary: annexed under text2git


@pytest.fixture
def served(tmp_path: Path) -> Chain:
    """raw.git, and analysis.git whose record writes inputs/raw/summary.bin into raw."""
    srv = tmp_path / "srv"
    srv.mkdir()
    raw = tmp_path / "build" / "raw"
    datalad("create", "-c", "text2git", str(raw))
    Dataset(raw).write("survey.csv", "id,score\n1,3\n")
    datalad("save", "-m", "raw data", cwd=raw)
    publish(raw, srv / "raw.git")
    ana = tmp_path / "build" / "analysis"
    datalad("create", "-c", "text2git", str(ana))
    datalad("clone", "-d", ".", str(srv / "raw.git"), "inputs/raw", cwd=ana)
    Dataset(ana).run_step("summary", "inputs/raw/survey.csv", "inputs/raw/summary.bin", SUMMARY)
    datalad("push", "--to", "origin", cwd=ana / "inputs/raw")
    publish(ana, srv / "analysis.git")
    port = free_port()
    config = tmp_path / "rerund.toml"
    config.write_text(
        f'state_dir = "state"\n[http]\nlisten = "127.0.0.1:{port}"\ntoken = "{API_TOKEN}"\n'
        + "".join(
            f'[[repos]]\nname = "{n}"\nremote = "{srv / n}.git"\ntrust = "any"\n'
            for n in ("raw", "analysis")
        ),
        encoding="utf-8",
    )
    for name in ("raw", "analysis"):
        rerund_cli(
            "hooks", "install", str(srv / f"{name}.git"), "--config", str(config), cwd=tmp_path
        )
    return Chain(tmp_path, Lab(tmp_path, srv / "analysis.git", Dataset(ana), config, port))


@pytest.fixture
def daemon(served: Chain) -> Iterator[Daemon]:
    started = Daemon(served.lab).start()
    wait_for(started.scanned, 60, "the start-up scan")
    try:
        yield started
    finally:
        started.stop()


def _pending(chain: Chain) -> list[str]:
    out = git("for-each-ref", "--format=%(refname)", "refs/rerund/pending", cwd=chain.bare("raw"))
    return out.splitlines()


def test_output_in_a_served_subdataset_is_pushed_to_it_first(served: Chain, daemon: Daemon) -> None:
    """raw gets the new summary (content too) on its branch; analysis's gitlink names it."""
    before = served.tip("analysis")
    fix = served.push_raw_fix("id,score\n1,3\n2,5\n3,9\n")

    wait_for(lambda: served.tip("analysis") != before, 120, "analysis to be published")
    wait_for(daemon.idle, 60, "every job to finish")

    raw_tip = served.tip("raw")
    assert git("rev-parse", f"{raw_tip}^", cwd=served.bare("raw")) == fix
    assert served.gitlink("analysis", "inputs/raw") == raw_tip
    assert [] == _pending(served)
    member = served.root / "member"
    datalad("clone", str(served.bare("analysis")), str(member))
    datalad("get", "-r", ".", cwd=member)
    assert (member / "inputs/raw/summary.bin").read_bytes() == b"4\n\x00"


def test_a_refused_superdataset_push_leaves_the_subdataset_branch_alone(
    served: Chain, daemon: Daemon
) -> None:
    """analysis.git refuses: raw's branch stays at the fix, the new commit only on a side ref."""
    hook = served.bare("analysis") / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'frozen for review' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = served.tip("analysis")
    fix = served.push_raw_fix("id,score\n1,3\n2,5\n")

    failed = wait_for(
        lambda: next(
            (j for j in daemon.jobs() if j["repo"] == "analysis" and j["state"] == "failed"), None
        ),
        120,
        "the analysis job to fail",
    )

    assert "frozen for review" in failed["error"]
    assert served.tip("analysis") == before
    assert served.tip("raw") == fix
    pending = _pending(served)
    assert len(pending) == 1
    assert git("rev-parse", f"{pending[0]}^", cwd=served.bare("raw")) == fix
