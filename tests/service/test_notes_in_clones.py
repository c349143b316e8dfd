"""Every clone of a served dataset agrees with the server about what is stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import Dataset, datalad, git, rerund
from service_helpers import Daemon, Lab, make_lab, wait_for


@pytest.fixture
def lab(_pipeline_template: Dataset, tmp_path: Path) -> Lab:
    return make_lab(tmp_path, _pipeline_template)


def _stale(clone: Path) -> list[str]:
    plan = json.loads(rerund("plan", "--json", cwd=clone).stdout)
    return [step["summary"] for step in plan["steps"]]


def test_identical_reproductions_reach_fresh_and_updated_clones(lab: Lab, tmp_path: Path) -> None:
    """After the daemon notes identical reruns, git clone, datalad clone, git pull and datalad
    update all show nothing stale, as the server does, with no fetch of a special ref."""
    # A clone made before the push, brought up to date later with `datalad update`.
    early = tmp_path / "early"
    datalad("clone", str(lab.bare), str(early))
    daemon = Daemon(lab).start()
    try:
        wait_for(daemon.scanned, what="the start-up scan to finish")
        lab.push_fix("# measured again, same values\n3\n1\n2\n")
        wait_for(lambda: len(daemon.jobs()) == 2 and daemon.idle(), what="the identical reruns")
        job = daemon.get(f"/api/jobs/{daemon.jobs()[0]['id']}")
        assert ["identical", "cut-off", "cut-off"] == [step["state"] for step in job["steps"]]
    finally:
        daemon.stop()
    assert [] == _stale(lab.bare)

    cloned = tmp_path / "git-clone"
    git("clone", "-q", str(lab.bare), str(cloned), cwd=tmp_path)
    datalad_cloned = tmp_path / "datalad-clone"
    datalad("clone", str(lab.bare), str(datalad_cloned))
    lab.user.git("pull", "-q", "--ff-only")  # as a lab member would: plain `git pull`
    datalad("update", "--how", "merge", cwd=early)

    assert {"git clone": [], "datalad clone": [], "git pull": [], "datalad update": []} == {
        "git clone": _stale(cloned),
        "datalad clone": _stale(datalad_cloned),
        "git pull": _stale(lab.user.path),
        "datalad update": _stale(early),
    }
    # Nothing was fetched by hand: the notes came as an ordinary remote branch.
    assert "" == git("for-each-ref", "refs/notes", cwd=cloned)
