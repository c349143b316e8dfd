"""Histories from bench/make_history.py are valid input for the real `datalad rerun`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "make_history.py"
RUN_MESSAGE = re.compile(
    r"\A\[DATALAD RUNCMD\] (?P<subject>.*?)\n\n=== Do not change lines below ===\n"
    r"(?P<record>.*)\n\^\^\^ Do not change lines above \^\^\^\n\Z",
    re.DOTALL,
)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "rerund tests",
    "GIT_AUTHOR_EMAIL": "tests@rerund.invalid",
    "GIT_COMMITTER_NAME": "rerund tests",
    "GIT_COMMITTER_EMAIL": "tests@rerund.invalid",
}


def _load_bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_history", BENCH_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


mh = _load_bench_module()


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def _datalad_json(repo: Path, *args: str) -> list[dict[str, Any]]:
    datalad = shutil.which("datalad")
    assert datalad is not None, "the datalad CLI must be on PATH"
    proc = subprocess.run(
        [datalad, "-f", "json", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_IDENTITY},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def _message(repo: Path, rev: str) -> str:
    """The commit message exactly as stored (`%B` would append a newline)."""
    return _git(repo, "cat-file", "commit", rev).split("\n\n", 1)[1]


def _run_commits(repo: Path) -> list[str]:
    """Run-record commits of main, oldest first, in the order `rerun` lists them."""
    out = _git(
        repo,
        "log",
        "--reverse",
        "--topo-order",
        "--format=%H",
        "--fixed-strings",
        "--grep=[DATALAD RUNCMD]",
        "main",
    )
    return out.split()


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A 12-record, 20-noise, 3-pipeline history."""
    repo = tmp_path / "ds"
    mh.make_history(repo, records=12, noise=20, pipelines=3, seed=0)
    return repo


def test_commit_counts(small: Path) -> None:
    """Init + code commit + records + noise, exactly 12 run records, on a clean main."""
    assert _git(small, "rev-list", "--count", "HEAD").strip() == str(1 + 1 + 12 + 20)
    assert len(_run_commits(small)) == 12
    assert _git(small, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert _git(small, "status", "--porcelain", "--untracked-files=normal") == ""
    assert _git(small, "rev-list", "--count", "--merges", "HEAD").strip() == "0"


def test_dataset_skeleton_matches_datalad_create_no_annex(small: Path) -> None:
    """Root commit holds only .datalad/config with a UUID id and an empty .noannex."""
    root = _git(small, "rev-list", "--max-parents=0", "HEAD").split()
    assert len(root) == 1
    assert _git(small, "ls-tree", "-r", "--name-only", root[0]).split() == [
        ".datalad/config",
        ".noannex",
    ]
    assert _message(small, root[0]) == "[DATALAD] new dataset\n"
    config = _git(small, "show", f"{root[0]}:.datalad/config")
    assert re.fullmatch(r'\[datalad "dataset"\]\n\tid = [0-9a-f-]{36}\n', config)
    assert _git(small, "show", f"{root[0]}:.noannex") == ""


def test_record_messages_have_datalad_layout(small: Path) -> None:
    """Every run message is byte-identical to what `datalad run` would write."""
    dsid = _git(small, "config", "-f", ".datalad/config", "datalad.dataset.id").strip()
    times = [int(t) for t in _git(small, "log", "--reverse", "--format=%ct", "main").split()]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    for sha in _run_commits(small):
        message = _message(small, sha)
        match = RUN_MESSAGE.match(message)
        assert match, message
        record = json.loads(match["record"])
        assert record["dsid"] == dsid
        assert match["record"] == json.dumps(record, indent=1, sort_keys=True, ensure_ascii=False)
        assert message == mh.run_message(
            record["cmd"], record["inputs"], record["outputs"], record["dsid"]
        )
        changed = _git(small, "diff-tree", "--no-commit-id", "--name-only", "-r", sha).split()
        assert changed == record["outputs"]


def test_superseding_records_follow_raw_edits(small: Path) -> None:
    """Some outputs are recorded twice, after an edit of their pipeline's raw file."""
    outputs: Counter[str] = Counter()
    for sha in _run_commits(small):
        message = _message(small, sha)
        match = RUN_MESSAGE.match(message)
        assert match
        outputs.update(json.loads(match["record"])["outputs"])
    assert max(outputs.values()) >= 2
    assert "Update raw/" in _git(small, "log", "--format=%s", "main")


def test_report_lists_exactly_the_run_commits(small: Path) -> None:
    """`datalad rerun --report --since=` lists the 12 run commits in history order."""
    results = _datalad_json(small, "rerun", "--report", "--since=")
    assert all(r["status"] == "ok" for r in results)
    run = [r for r in results if r.get("rerun_action") == "run"]
    assert [r["commit"] for r in run] == _run_commits(small)
    assert all(r["run_info"]["cmd"] == mh.STEP_CMD for r in run)


@pytest.mark.slow
def test_rerun_on_tip_reproduces_identically(small: Path) -> None:
    """Replaying every record on the tip executes 12 commands and commits nothing."""
    head = _git(small, "rev-parse", "HEAD").strip()
    root = _git(small, "rev-list", "--max-parents=0", "HEAD").strip()
    results = _datalad_json(small, "rerun", f"--since={root}")
    actions = Counter((r["action"], r["status"]) for r in results)
    assert actions[("run", "ok")] >= 12
    assert actions[("save", "notneeded")] == 12
    assert not [r for r in results if r["status"] not in {"ok", "notneeded"}]
    assert _git(small, "rev-parse", "HEAD").strip() == head
    assert _git(small, "status", "--porcelain", "--untracked-files=normal") == ""


@pytest.mark.slow
def test_rerun_from_scratch_rebuilds_same_tree(small: Path) -> None:
    """Replaying onto the first run's parent recreates every output from its own inputs."""
    results = _datalad_json(small, "rerun", "--since=", "--onto=", "--branch=replay")
    assert not [r for r in results if r["status"] not in {"ok", "notneeded"}]
    assert Counter(r["action"] for r in results)["save"] == 12
    assert _git(small, "rev-parse", "replay^{tree}") == _git(small, "rev-parse", "main^{tree}")


def test_cksum_line_matches_cksum_binary() -> None:
    """The Python CRC equals the output of the system `cksum` read from stdin."""
    for data in (b"", b"hello\n", bytes(range(256)) * 300):
        expected = subprocess.run(["cksum"], input=data, capture_output=True, check=True)
        assert mh.cksum_line(data) == expected.stdout


def test_same_seed_same_history(tmp_path: Path) -> None:
    """Generation is deterministic per seed and differs across seeds."""
    heads = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        mh.make_history(tmp_path / name, records=30, noise=30, pipelines=4, seed=seed)
        heads.append(_git(tmp_path / name, "rev-parse", "HEAD"))
    assert heads[0] == heads[1] != heads[2]


def test_cli_prints_summary_and_refuses_non_empty_dir(tmp_path: Path) -> None:
    """The CLI writes the history, prints one summary line, and rejects a used directory."""
    out = tmp_path / "cli"
    args = [sys.executable, str(BENCH_SCRIPT), str(out), "--records", "7", "--noise", "5"]
    proc = subprocess.run([*args, "--pipelines", "2"], capture_output=True, text=True, check=True)
    assert re.fullmatch(r"make_history: 7 records, 14 commits .* in [0-9.]+s -> .*\n", proc.stdout)
    assert len(_run_commits(out)) == 7
    again = subprocess.run(args, capture_output=True, text=True, check=False)
    assert again.returncode == 1
    assert "not empty" in again.stderr
