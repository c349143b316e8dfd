"""DataLad's own rerun tests replayed side by side: ``datalad rerun`` and ``rerund rerun``.

Every scenario of :mod:`datalad_scenarios` builds its history once, then each
tool gets an identical copy at the same path and the same fixed commit dates,
so equal behaviour gives equal commit ids. Compared: exit status, HEAD and
its branch, the new commits, the work tree's state, which annexed files have
their content, and ``--script`` text (apart from the line naming the tool).
Where the two differ by a documented choice, ``datalad rerun`` must still
replay rerund's commits.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
from datalad_scenarios import SCENARIOS, Scenario

from helpers import datalad
from rerund.core.gitrepo import WITHOUT_ANNEX_FILTER

BUILD_DATE = "1700000000 +0000"
RERUN_DATE = "1700086400 +0000"
_DOC = Path(__file__).resolve().parents[2] / "docs" / "datalad-compat.md"


@dataclass(frozen=True)
class Outcome:
    exit: int
    head: str
    branch: str
    new_commits: list[str]
    tree: str
    annexed_present: str
    script: str | None
    output: str
    """What the tool said: shown when the outcomes differ, never compared."""


_CREATE_OPTIONS = {"annexed": (), "text2git": ("-c", "text2git"), "no-annex": ("--no-annex",)}


class _Created(dict[str, Path]):
    """One ``datalad create`` of each kind, made when first asked for."""

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base

    def __missing__(self, kind: str) -> Path:
        path = self.base / kind
        datalad("create", *_CREATE_OPTIONS[kind], str(path))
        self[kind] = path
        return path


@pytest.fixture(scope="session")
def _created(tmp_path_factory: pytest.TempPathFactory) -> _Created:
    return _Created(tmp_path_factory.mktemp("created"))


def _env(date: str) -> dict[str, str]:
    return {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}


def _run(argv: list[str], cwd: Path, date: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, env=_env(date)
    )


def _git(ds: Path, *args: str) -> str:
    return _run(["git", *args], ds, RERUN_DATE).stdout.strip()


def _build(ds: Path, script: str) -> None:
    text = "set -euo pipefail\nB=$(git symbolic-ref --short HEAD)\n" + script
    done = _run(["bash", "-c", text], ds, BUILD_DATE)
    assert done.returncode == 0, f"building the history failed:\n{done.stderr}"
    assert "" == _git(ds, "status", "--porcelain"), "the built history left a dirty tree"


def _replay(tool: str, ds: Path, scenario: Scenario) -> Outcome:
    before = _git(ds, "rev-parse", "HEAD")
    if tool == "datalad":
        argv = ["datalad", "rerun", *scenario.datalad]
    else:
        argv = [sys.executable, "-m", "rerund", "rerun", *scenario.rerund]
    done = _run(argv, ds / scenario.cwd, RERUN_DATE)
    script = None
    if "--script" in argv and done.returncode == 0:
        lines = done.stdout.splitlines(keepends=True)
        # The one line allowed to differ: the invocation that generated the script.
        script = "".join(
            re.sub(r"^#   (datalad|rerund) rerun ", "#   TOOL rerun ", line) for line in lines
        )
    _refresh(ds)
    return Outcome(
        exit=done.returncode,
        head=_git(ds, "rev-parse", "HEAD"),
        branch=_git(ds, "symbolic-ref", "-q", "--short", "HEAD"),
        new_commits=_git(ds, "log", "--format=%H %P %s", f"{before}..HEAD").splitlines(),
        tree=_git(ds, "status", "--porcelain=v1", "--untracked-files=all")
        + _git(ds, "diff", "HEAD", "--stat"),
        annexed_present=_git(ds, "annex", "find"),
        script=script,
        output=done.stdout[-2000:] + done.stderr[-2000:],
    )


def _refresh(ds: Path) -> None:
    """Bring the index's file stats up to date without git-annex's filter.

    Where stats look stale (a copy's new inodes, or a file written in the same
    second as the index) git cleans the file again, and git-annex's filter would
    then annex a small file a command had ``git add``ed to git: it would look
    modified. Content that really differs still shows.
    """
    _git(ds, *WITHOUT_ANNEX_FILTER, "update-index", "-q", "--refresh")


def _settle(ds: Path) -> None:
    """Let a second pass after the copy's index was written, as in any lab's dataset.

    Within that second, git-annex's filter annexes a file in git that a command
    modifies and ``git add``s; after it, the file stays in git. DataLad did the
    former in most runs by timing alone (measured: never once a second had passed).
    """
    written = (ds / ".git" / "index").stat().st_mtime
    time.sleep(max(0.0, written + 1.1 - time.time()))


def _side_by_side(built: Path, work: Path, scenario: Scenario) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for tool in ("datalad", "rerund"):
        shutil.copytree(built, work, symlinks=True)
        _refresh(work)
        if "git add" in scenario.build:
            _settle(work)
        assert "" == _git(work, "status", "--porcelain"), "the copy is not clean"
        outcomes[tool] = _replay(tool, work, scenario)
        work.rename(work.with_name(f"after-{tool}"))  # annex objects are read-only: no rmtree
    return outcomes


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_datalad_and_rerund_agree(scenario: Scenario, _created: _Created, tmp_path: Path) -> None:
    """Both tools, run on identical copies, end in the identical state (or the documented one)."""
    built = tmp_path / "built"
    shutil.copytree(_created[scenario.kind], built, symlinks=True)
    _build(built, scenario.build)

    outcomes = _side_by_side(built, tmp_path / "ds", scenario)

    theirs, ours = (asdict(outcomes[tool]) for tool in ("datalad", "rerund"))
    said = f"datalad said:\n{theirs.pop('output')}\nrerund said:\n{ours.pop('output')}"
    assert scenario.exit == theirs["exit"], said
    if scenario.ignore_tree:
        theirs.pop("tree")
        ours.pop("tree")
    if scenario.difference:
        assert theirs["exit"] == ours["exit"], said
        assert theirs != ours, f"now identical; drop the documented difference: {scenario.name}"
        if ours["new_commits"]:  # different, but DataLad's kind: DataLad replays them
            before = _git(built, "rev-parse", "HEAD")
            again = _run(
                ["datalad", "rerun", f"--since={before}"], tmp_path / "after-rerund", RERUN_DATE
            )
            assert 0 == again.returncode, again.stdout + again.stderr
    else:
        assert theirs == ours, said


def test_compat_document_states_the_figures() -> None:
    """docs/datalad-compat.md names every scenario and the figure the replay proves."""
    text = _DOC.read_text(encoding="utf-8")
    differing = [s for s in SCENARIOS if s.difference]
    identical = len(SCENARIOS) - len(differing)
    assert f"{identical} of {len(SCENARIOS)} scenarios identical" in text
    for scenario in SCENARIOS:
        assert f"`{scenario.name}`" in text, scenario.name
